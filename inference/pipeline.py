"""The pre-labelling pipelines, composed from the stages.

v0: crops -> embeddings -> neighbours in the search space -> candidates (best neighbour per product).
v1: v0, then realgram: the shelf's recent annotations near each crop added to the kNN scores.

All boxes of a frame travel together: one embedding batch, one batched search and one realgram call
per frame. Each candidate carries its component scores, so the workspace can show why.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from inference.candidates import Candidate, aggregate_neighbours
from inference.embedder import Embedder
from inference.images import Bbox, crop_boxes
from inference.realgram import RealgramConfig, ShelfHistory, apply_realgram, realgram_scores
from inference.search_space import SearchSpace

PIPELINE_VERSIONS = ("v0", "v1")


@dataclass(frozen=True)
class PipelineConfig:
    """version: the name recorded with each prediction.
    knn_neighbours: annotated crops retrieved per box.
    top_k: candidates kept per box.
    realgram: shelf-context hyperparameters; None runs kNN alone (v0)."""

    version: str = "v0"
    knn_neighbours: int = 10
    top_k: int = 10
    realgram: RealgramConfig | None = None

    @classmethod
    def named(cls, version: str, *, realgram: RealgramConfig | None = None, **options) -> PipelineConfig:
        """The configuration of a named pipeline: "v0" (kNN) or "v1" (kNN + realgram)."""
        if version not in PIPELINE_VERSIONS:
            raise ValueError(f"unknown pipeline {version!r}; known: {', '.join(PIPELINE_VERSIONS)}")
        if version == "v1":
            return cls(version=version, realgram=realgram or RealgramConfig(), **options)
        return cls(version=version, **options)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FrameContext:
    """Where and when a frame was taken. Searches are scoped by company; realgram reads the shelf's
    history before ``captured_at`` (seconds since the epoch; None: no shelf context)."""

    company_id: int
    store_id: int
    shelf_id: int
    width: int
    height: int
    captured_at: float | None = None


class Pipeline:
    def __init__(self, embedder: Embedder, search_space: SearchSpace, config: PipelineConfig):
        self.embedder = embedder
        self.search_space = search_space
        self.config = config

    def embed_boxes(self, image: Image.Image, boxes: Sequence[Bbox]) -> np.ndarray:
        return self.embedder.embed(crop_boxes(image, boxes))

    def predict(
        self,
        image: Image.Image,
        boxes: Sequence[Bbox],
        context: FrameContext,
        history: ShelfHistory | None = None,
    ) -> list[list[Candidate]]:
        """Ranked candidates for every box of one frame."""
        return self.rank(self.embed_boxes(image, boxes), boxes, context, history)

    def rank(
        self,
        vectors: np.ndarray,
        boxes: Sequence[Bbox],
        context: FrameContext,
        history: ShelfHistory | None = None,
    ) -> list[list[Candidate]]:
        return rank_candidates(vectors, boxes, context, history, search_space=self.search_space, config=self.config)


def rank_candidates(
    vectors: np.ndarray,
    boxes: Sequence[Bbox],
    context: FrameContext,
    history: ShelfHistory | None,
    *,
    search_space: SearchSpace,
    config: PipelineConfig,
) -> list[list[Candidate]]:
    """Candidates for a frame's boxes from their embeddings (one row per box): kNN, then realgram
    when the config has it and the shelf has history."""
    neighbours = search_space.search(vectors, company_id=context.company_id, limit=config.knn_neighbours)
    candidates = [aggregate_neighbours(box_neighbours, config.top_k) for box_neighbours in neighbours]
    if config.realgram is None or history is None or len(history) == 0 or context.captured_at is None:
        return candidates
    normalised = np.asarray(boxes, np.float64).reshape(-1, 4) / np.array(
        [context.width, context.height, context.width, context.height], np.float64)
    scores = realgram_scores(history, normalised, context.captured_at, config.realgram)
    return apply_realgram(candidates, scores, config.top_k)
