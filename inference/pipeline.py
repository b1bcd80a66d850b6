"""The pre-labelling pipeline: crops of a frame -> embeddings -> neighbours -> ranked candidates.

All boxes of a frame travel together: one embedding batch and one batched search per frame.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from inference.candidates import Candidate, aggregate_neighbours
from inference.embedder import Embedder
from inference.images import Bbox, crop_boxes
from inference.search_space import SearchSpace


@dataclass(frozen=True)
class PipelineConfig:
    """version: the name recorded with each prediction.
    knn_neighbours: annotated crops retrieved per box.
    top_k: candidates kept per box."""

    version: str = "v0"
    knn_neighbours: int = 10
    top_k: int = 10


@dataclass(frozen=True)
class ShelfContext:
    """Where a frame was taken; searches are scoped by it."""

    company_id: int
    store_id: int
    shelf_id: int


class Pipeline:
    def __init__(self, embedder: Embedder, search_space: SearchSpace, config: PipelineConfig):
        self.embedder = embedder
        self.search_space = search_space
        self.config = config

    def embed_boxes(self, image: Image.Image, boxes: Sequence[Bbox]) -> np.ndarray:
        return self.embedder.embed(crop_boxes(image, boxes))

    def predict(self, image: Image.Image, boxes: Sequence[Bbox], context: ShelfContext) -> list[list[Candidate]]:
        """Ranked candidates for every box of one frame (v0: kNN, best neighbour per product)."""
        vectors = self.embed_boxes(image, boxes)
        neighbours = self.search_space.search(
            vectors, company_id=context.company_id, limit=self.config.knn_neighbours
        )
        return [aggregate_neighbours(box_neighbours, self.config.top_k) for box_neighbours in neighbours]
