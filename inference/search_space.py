"""The search space: annotated crops as vectors in Qdrant, with the payload that filters them.

One collection per embedder version (vectors of different embedders are not comparable). Each
point is one annotated box, its id the box id, so upserting a relabelled box replaces its point.
Searches are always filtered by company. The same code runs against a Qdrant server and against
qdrant-client's embedded local mode.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient, models

from inference.candidates import Neighbour

FILTER_FIELDS = ("company_id", "store_id", "shelf_id", "category_id", "product_id", "frame_id")


@dataclass(frozen=True)
class CropPoint:
    """An annotated crop: its embedding and where it came from."""

    box_id: int
    vector: np.ndarray
    product_id: int
    frame_id: int
    company_id: int
    store_id: int
    shelf_id: int
    category_id: int | None
    annotated_at: datetime

    def payload(self) -> dict:
        return {
            "product_id": self.product_id,
            "box_id": self.box_id,
            "frame_id": self.frame_id,
            "company_id": self.company_id,
            "store_id": self.store_id,
            "shelf_id": self.shelf_id,
            "category_id": self.category_id,
            "annotated_at": self.annotated_at.isoformat(),
        }


def connect_qdrant(url: str | None = None, path: str | Path | None = None, api_key: str | None = None) -> QdrantClient:
    """A Qdrant server when ``url`` is given, else the embedded local mode stored under ``path``
    (``":memory:"`` keeps it in memory)."""
    if url:
        return QdrantClient(url=url, api_key=api_key, timeout=30)
    if path is None or str(path) == ":memory:":
        return QdrantClient(location=":memory:")
    Path(path).mkdir(parents=True, exist_ok=True)
    return QdrantClient(path=str(path))


def collection_name(embedder_name: str) -> str:
    return "crops-" + re.sub(r"[^A-Za-z0-9_-]+", "-", embedder_name).strip("-")


class SearchSpace:
    """Top-K search over annotated crops of one embedder version."""

    def __init__(self, client: QdrantClient, collection: str, dim: int):
        self.client = client
        self.collection = collection
        self.dim = dim

    def ensure_collection(self) -> None:
        """Create the collection and its payload indexes if missing."""
        if self.client.collection_exists(self.collection):
            return
        self.client.create_collection(
            self.collection, vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE)
        )
        with warnings.catch_warnings():
            # The embedded mode scans exactly and ignores payload indexes (and says so); servers use them.
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for field in FILTER_FIELDS:
                self.client.create_payload_index(self.collection, field, models.PayloadSchemaType.INTEGER)

    def recreate(self) -> None:
        if self.client.collection_exists(self.collection):
            self.client.delete_collection(self.collection)
        self.ensure_collection()

    def upsert(self, points: Sequence[CropPoint], batch_size: int = 256) -> None:
        self.ensure_collection()
        for start in range(0, len(points), batch_size):
            batch = points[start : start + batch_size]
            self.client.upsert(
                self.collection,
                points=[
                    models.PointStruct(id=p.box_id, vector=np.asarray(p.vector, dtype=np.float32).tolist(), payload=p.payload())
                    for p in batch
                ],
                wait=True,
            )

    def delete(self, box_ids: Sequence[int]) -> None:
        if not box_ids or not self.client.collection_exists(self.collection):
            return
        self.client.delete(self.collection, points_selector=models.PointIdsList(points=list(box_ids)), wait=True)

    def count(self, company_id: int | None = None) -> int:
        if not self.client.collection_exists(self.collection):
            return 0
        query_filter = _filter(company_id=company_id) if company_id is not None else None
        return self.client.count(self.collection, count_filter=query_filter, exact=True).count

    def search(
        self,
        vectors: np.ndarray,
        *,
        company_id: int,
        store_id: int | None = None,
        category_id: int | None = None,
        limit: int = 10,
    ) -> list[list[Neighbour]]:
        """Nearest annotated crops for each row of ``vectors``, in one batch call."""
        if len(vectors) == 0 or not self.client.collection_exists(self.collection):
            return [[] for _ in range(len(vectors))]
        query_filter = _filter(company_id=company_id, store_id=store_id, category_id=category_id)
        requests = [
            models.QueryRequest(query=np.asarray(v, dtype=np.float32).tolist(), filter=query_filter, limit=limit,
                                with_payload=["product_id"])
            for v in vectors
        ]
        responses = self.client.query_batch_points(self.collection, requests=requests)
        return [
            [Neighbour(product_id=int(p.payload["product_id"]), score=float(p.score), box_id=int(p.id)) for p in r.points]
            for r in responses
        ]


def _filter(**fields: int | None) -> models.Filter:
    return models.Filter(
        must=[models.FieldCondition(key=key, match=models.MatchValue(value=value))
              for key, value in fields.items() if value is not None]
    )
