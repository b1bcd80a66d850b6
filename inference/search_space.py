"""The search space: annotated crops as vectors, with the payload that filters them.

One interface, three engines:
- ``QdrantSearchSpace``: a Qdrant collection through qdrant-client, on a server (production) or in
  qdrant-client's embedded local mode (exact search in pure Python: fine for a demo, seconds per
  query at 100k points);
- ``EdgeSearchSpace``: Qdrant's own engine in-process (``qdrant-edge-py``): HNSW and payload indexes
  in a folder, milliseconds per query at 100k points, the app's embedded default;
- ``ExactSearchSpace``: exact cosine search in numpy, in memory, for replays that run thousands of
  queries against an index that grows after every frame (no index to rebuild, exact answers).

One collection per embedder version (vectors of different embedders are not comparable). Each
point is one annotated box, its id the box id, so upserting a relabelled box replaces its point.
Searches are always filtered by company.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import qdrant_edge as edge
from qdrant_client import QdrantClient, models

from inference.candidates import Neighbour

FILTER_FIELDS = ("company_id", "store_id", "shelf_id", "category_id", "product_id", "frame_id")
OWNER_FILE = "owner.json"  # who holds an embedded engine's folder, for the message the next process gets


class SearchSpaceLocked(RuntimeError):
    """An embedded engine's folder is held by another process (each engine locks its folder)."""


def claim_folder(folder: Path) -> None:
    """Record this process as the holder of ``folder`` (opened: its lock is ours)."""
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command_line(),
             "since": datetime.now(UTC).isoformat(timespec="seconds")}
    partial = folder / f".{OWNER_FILE}.{os.getpid()}"
    partial.write_text(json.dumps(owner))
    partial.replace(folder / OWNER_FILE)


def release_folder(folder: Path) -> None:
    """Forget the owner record if it is this process's."""
    owner = _recorded_owner(folder) or {}
    if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        (folder / OWNER_FILE).unlink(missing_ok=True)


def locked_error(folder: Path) -> SearchSpaceLocked:
    """The one-line error for a folder another process holds, naming that process."""
    owner = _recorded_owner(folder)
    if owner is None:
        holder = "another process (it recorded no owner)"
    else:
        holder = f"pid {owner.get('pid')} on {owner.get('host')} ({owner.get('command')}; since {owner.get('since')})"
        if owner.get("host") == socket.gethostname() and not _running(owner.get("pid")):
            holder = f"another process (the one recorded, {holder}, has exited)"
    return SearchSpaceLocked(f"the embedded search space {folder} is held by {holder}: one process owns it "
                             "(stop that one first, or set QDRANT_URL to share a Qdrant server)")


def _recorded_owner(folder: Path) -> dict | None:
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _running(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True
    except (OSError, TypeError, ValueError):
        return False
    return True


def _command_line() -> str:
    command = " ".join(shlex.join(sys.argv).split())  # one line, even for `python -c` code
    return command[:300] + (" ..." if len(command) > 300 else "")


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
    try:
        client = QdrantClient(path=str(path))
    except RuntimeError as error:
        if "already accessed" in str(error):  # its portalocker lock on the folder
            raise locked_error(Path(path)) from None
        raise
    claim_folder(Path(path))
    return client


def collection_name(embedder_name: str) -> str:
    return "crops-" + re.sub(r"[^A-Za-z0-9_-]+", "-", embedder_name).strip("-")


class SearchSpace(Protocol):
    """Top-K search over annotated crops of one embedder version."""

    dim: int

    def ensure_collection(self) -> None: ...

    def recreate(self) -> None: ...

    def upsert(self, points: Sequence[CropPoint]) -> None: ...

    def delete(self, box_ids: Sequence[int]) -> None: ...

    def count(self, company_id: int | None = None) -> int: ...

    def search(self, vectors: np.ndarray, *, company_id: int, store_id: int | None = None,
               category_id: int | None = None, limit: int = 10) -> list[list[Neighbour]]: ...

    def flush(self) -> None:
        """Build what indexes an engine builds on request, and persist (a no-op where it has none)."""


class QdrantSearchSpace:
    """A Qdrant collection: a server, or qdrant-client's embedded local mode."""

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

    def flush(self) -> None:
        """A server indexes by itself, and local mode has no index."""

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


class EdgeSearchSpace:
    """One collection as a Qdrant Edge shard in ``root / collection``: the engine of a Qdrant server,
    in this process. One process owns a shard at a time (the worker), as with the embedded mode.

    Below Qdrant's indexing threshold a segment is searched exactly; above it, ``optimize()`` (run
    by ``flush``) builds the HNSW graph, searched with ``hnsw_ef`` candidates. ``quantize`` keeps
    int8 copies of the vectors in RAM for the graph search and rescores the best ``oversampling`` x
    limit with the originals (a quarter of the memory; set when the shard is created)."""

    VECTOR = "crop"

    def __init__(self, root: str | Path, collection: str, dim: int, *, hnsw_ef: int = 128, quantize: bool = False,
                 oversampling: float = 2.0):
        self.path = Path(root) / collection
        self.collection = collection
        self.dim = dim
        self.hnsw_ef = hnsw_ef
        self.quantize = quantize
        self.oversampling = oversampling
        self._shard = None
        # A shard folder opens once per process: two threads opening it at once would both try.
        self._opening = threading.Lock()

    def _open(self, create: bool):
        with self._opening:
            return self._open_once(create)

    def _open_once(self, create: bool):
        if self._shard is None:
            try:
                if (self.path / "edge_config.json").exists():
                    self._shard = edge.EdgeShard.load(str(self.path))
                elif create:
                    self.path.mkdir(parents=True, exist_ok=True)
                    quantization = (edge.ScalarQuantizationConfig(type=edge.ScalarType.Int8, quantile=0.99,
                                                                  always_ram=True) if self.quantize else None)
                    config = edge.EdgeConfig(vectors={self.VECTOR: edge.EdgeVectorParams(
                        size=self.dim, distance=edge.Distance.Cosine, quantization_config=quantization)})
                    self._shard = edge.EdgeShard.create(str(self.path), config)
                    for field in FILTER_FIELDS:
                        self._shard.update(edge.UpdateOperation.create_field_index(
                            field, edge.PayloadSchemaType.Integer))
            except Exception as error:
                # Qdrant Edge locks the shard's write-ahead log: a second opener gets WouldBlock.
                if "WouldBlock" in str(error):
                    raise locked_error(self.path) from None
                raise
            if self._shard is not None:
                claim_folder(self.path)
        return self._shard

    def ensure_collection(self) -> None:
        self._open(create=True)

    def recreate(self) -> None:
        # Open it first: removing a folder another process holds would pull the shard from under it.
        self._open(create=False)
        self.close()
        if self.path.exists():
            shutil.rmtree(self.path)
        self.ensure_collection()

    def upsert(self, points: Sequence[CropPoint], batch_size: int = 1024) -> None:
        shard = self._open(create=True)
        for start in range(0, len(points), batch_size):
            batch = points[start : start + batch_size]
            shard.update(edge.UpdateOperation.upsert_points([
                edge.Point(id=p.box_id, vector={self.VECTOR: np.asarray(p.vector, np.float32).tolist()},
                           payload={k: v for k, v in p.payload().items() if v is not None})
                for p in batch
            ]))

    def delete(self, box_ids: Sequence[int]) -> None:
        shard = self._open(create=False)
        if box_ids and shard is not None:
            shard.update(edge.UpdateOperation.delete_points([int(i) for i in box_ids]))

    def count(self, company_id: int | None = None) -> int:
        shard = self._open(create=False)
        if shard is None:
            return 0
        query_filter = _edge_filter(company_id=company_id) if company_id is not None else None
        return shard.count(edge.CountRequest(exact=True, filter=query_filter))

    def search(self, vectors: np.ndarray, *, company_id: int, store_id: int | None = None,
               category_id: int | None = None, limit: int = 10) -> list[list[Neighbour]]:
        """Nearest annotated crops for each row of ``vectors``, in one planned batch."""
        shard = self._open(create=False)
        if len(vectors) == 0 or shard is None:
            return [[] for _ in range(len(vectors))]
        query_filter = _edge_filter(company_id=company_id, store_id=store_id, category_id=category_id)
        rescoring = (edge.QuantizationSearchParams(rescore=True, oversampling=self.oversampling)
                     if self.quantize else None)
        params = edge.SearchParams(hnsw_ef=max(self.hnsw_ef, limit), quantization=rescoring)
        requests = [
            edge.QueryRequest(limit=limit, query=edge.Query.Nearest(np.asarray(v, np.float32).tolist(), using=self.VECTOR),
                              filter=query_filter, params=params, with_payload=["product_id"])
            for v in vectors
        ]
        return [
            [Neighbour(product_id=int(p.payload["product_id"]), score=float(p.score), box_id=int(p.id)) for p in hits]
            for hits in shard.query_batch(edge.QueryBatchRequest(requests))
        ]

    def indexed_count(self) -> int:
        """Points searched through the HNSW graph (the rest are scanned exactly)."""
        shard = self._open(create=False)
        return shard.info().indexed_vectors_count if shard is not None else 0

    def flush(self) -> None:
        """Build pending indexes and write everything to disk."""
        if self._shard is not None:
            self._shard.optimize()
            self._shard.flush()

    def close(self) -> None:
        if self._shard is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None
            release_folder(self.path)


def _edge_filter(**fields: int | None):
    return edge.Filter(must=[edge.FieldCondition(key=key, match=edge.MatchValue(value))
                             for key, value in fields.items() if value is not None])


def _filter(**fields: int | None) -> models.Filter:
    return models.Filter(
        must=[models.FieldCondition(key=key, match=models.MatchValue(value=value))
              for key, value in fields.items() if value is not None]
    )


GATHER_BELOW = 8  # filters keeping under 1/8 of a company's rows copy them out; broader ones score in place


class _CompanyRows:
    """One company's points in growable arrays; a deleted or replaced point leaves a dead row, so
    writes never copy the whole block."""

    _FIELDS = ("store_id", "category_id", "product_id")

    def __init__(self, dim: int, capacity: int):
        self.dim = dim
        self.vectors = np.zeros((capacity, dim), np.float32)
        self.columns = {field: np.zeros(capacity, np.int64) for field in self._FIELDS}
        self.ids = np.zeros(capacity, np.int64)
        self.alive = np.zeros(capacity, bool)
        self.row_of: dict[int, int] = {}
        self.size = 0

    def _grow(self, needed: int) -> None:
        capacity = len(self.ids)
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity)
        self.vectors = np.resize(self.vectors, (capacity, self.dim))
        self.ids = np.resize(self.ids, capacity)
        alive = np.zeros(capacity, bool)
        alive[: self.size] = self.alive[: self.size]
        self.alive = alive
        self.columns = {field: np.resize(column, capacity) for field, column in self.columns.items()}

    def append(self, points: Sequence[CropPoint]) -> None:
        start, end = self.size, self.size + len(points)
        self._grow(end)
        vectors = np.stack([np.asarray(p.vector, np.float32) for p in points])
        self.vectors[start:end] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
        self.ids[start:end] = [p.box_id for p in points]
        for field in self._FIELDS:
            # Unknown categories are -1: a category filter never matches them.
            self.columns[field][start:end] = [-1 if getattr(p, field) is None else getattr(p, field) for p in points]
        self.alive[start:end] = True
        self.row_of.update((p.box_id, row) for row, p in enumerate(points, start=start))
        self.size = end

    def kill(self, box_ids: Sequence[int]) -> None:
        rows = [self.row_of.pop(box_id) for box_id in box_ids if box_id in self.row_of]
        self.alive[rows] = False

    def search(self, queries: np.ndarray, store_id: int | None, category_id: int | None,
               limit: int) -> list[list[Neighbour]]:
        mask = self.alive[: self.size].copy()
        for field, value in (("store_id", store_id), ("category_id", category_id)):
            if value is not None:
                mask &= self.columns[field][: self.size] == value
        rows = np.flatnonzero(mask)
        if len(rows) == 0:
            return [[] for _ in range(len(queries))]
        if len(rows) * GATHER_BELOW > self.size:
            # A broad filter: scoring every row in place beats copying the matching rows out first.
            scores = (queries @ self.vectors[: self.size].T)[:, rows]
        else:
            scores = queries @ self.vectors[rows].T  # (Q, n)
        k = min(limit, len(rows))
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        results = []
        for query_scores, candidates in zip(scores, top):
            chosen = rows[candidates]
            # Best first; equal scores by box id, so the ranking never depends on insertion order.
            order = np.lexsort((self.ids[chosen], -query_scores[candidates]))
            results.append([
                Neighbour(product_id=int(self.columns["product_id"][chosen[i]]), score=float(query_scores[candidates[i]]),
                          box_id=int(self.ids[chosen[i]]))
                for i in order
            ])
        return results


class ExactSearchSpace:
    """Exact cosine search in memory, one block of rows per company: every search names its company,
    so it scores that company's rows only (a filter on the others costs nothing)."""

    def __init__(self, dim: int, capacity: int = 1024):
        """``capacity``: the rows each company's block starts with."""
        self.dim = dim
        self._capacity = capacity
        self._blocks: dict[int, _CompanyRows] = {}
        self._company_of: dict[int, int] = {}

    def ensure_collection(self) -> None:
        """Nothing to create: the index exists from construction."""

    def recreate(self) -> None:
        self.__init__(self.dim, self._capacity)

    def flush(self) -> None:
        """In memory, exact: nothing to build or persist."""

    def upsert(self, points: Sequence[CropPoint]) -> None:
        if not points:
            return
        self.delete([p.box_id for p in points])
        by_company: dict[int, list[CropPoint]] = {}
        for p in points:
            by_company.setdefault(p.company_id, []).append(p)
        for company_id, company_points in by_company.items():
            block = self._blocks.setdefault(company_id, _CompanyRows(self.dim, self._capacity))
            block.append(company_points)
            self._company_of.update((p.box_id, company_id) for p in company_points)

    def delete(self, box_ids: Sequence[int]) -> None:
        by_company: dict[int, list[int]] = {}
        for box_id in box_ids:
            if box_id in self._company_of:
                by_company.setdefault(self._company_of.pop(box_id), []).append(box_id)
        for company_id, ids in by_company.items():
            self._blocks[company_id].kill(ids)

    @property
    def nbytes(self) -> int:
        """Memory held by the vectors (blocks grow by doubling, so up to twice what is stored)."""
        return sum(block.vectors.nbytes for block in self._blocks.values())

    def count(self, company_id: int | None = None) -> int:
        blocks = self._blocks.values() if company_id is None else [self._blocks.get(company_id)]
        return sum(len(block.row_of) for block in blocks if block is not None)

    def search(self, vectors: np.ndarray, *, company_id: int, store_id: int | None = None,
               category_id: int | None = None, limit: int = 10) -> list[list[Neighbour]]:
        queries = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        block = self._blocks.get(company_id)
        if len(queries) == 0 or block is None:
            return [[] for _ in range(len(queries))]
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(1e-12)
        return block.search(queries, store_id, category_id, limit)
