"""The pre-labelling pipelines, composed from the stages.

v0: crops -> embeddings -> neighbours in the search space -> candidates (best neighbour per product).
v1: v0, then realgram: the shelf's recent annotations near each crop added to the kNN scores.
v2: v1, then tracking: the camera's previous frame's answer carried to the facings still there.
v3: v2, then the reranker: a learned model picks from each box's top-K (v2's ranking while untrained).

All boxes of a frame travel together: one embedding batch, one batched search and one realgram call
per frame. Each candidate carries its component scores, so the workspace can show why.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from inference.candidates import Candidate, aggregate_neighbours
from inference.config import Config
from inference.images import Bbox, crop_boxes
from inference.realgram import RealgramConfig, ShelfHistory, apply_realgram, realgram_scores
from inference.reranker import Reranker
from inference.tracking import PreviousFrame, TrackingConfig, apply_tracking, match_tracks

if TYPE_CHECKING:  # types only: the configs and ranking here need neither torch nor a Qdrant client
    from inference.embedder import Embedder
    from inference.search_space import SearchSpace

PIPELINE_VERSIONS = ("v0", "v1", "v2", "v3")


@dataclass(frozen=True)
class PipelineConfig(Config):
    """version: the name recorded with each prediction.
    knn_neighbours: annotated crops retrieved per box.
    top_k: candidates kept per box.
    realgram: shelf-context hyperparameters; None runs without shelf context (v0).
    tracking: hyperparameters of carrying the previous frame forward; None: no tracking.
    rerank: re-rank with the learned model when one is given (v3)."""

    version: str = "v0"
    knn_neighbours: int = 10
    top_k: int = 10
    realgram: RealgramConfig | None = None
    tracking: TrackingConfig | None = None
    rerank: bool = False

    @classmethod
    def named(cls, version: str, *, realgram: RealgramConfig | None = None, tracking: TrackingConfig | None = None,
              **options) -> PipelineConfig:
        """The configuration of a named pipeline: "v0" (kNN), "v1" (+ realgram), "v2" (+ tracking)
        or "v3" (+ the reranker)."""
        if version not in PIPELINE_VERSIONS:
            raise ValueError(f"unknown pipeline {version!r}; known: {', '.join(PIPELINE_VERSIONS)}")
        stages = PIPELINE_VERSIONS.index(version)
        return cls(
            version=version,
            realgram=(realgram or RealgramConfig()) if stages >= 1 else None,
            tracking=(tracking or TrackingConfig()) if stages >= 2 else None,
            rerank=stages >= 3,
            **options,
        )

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
    """The stages with their models. ``reranker``: the trained second-level model for a config
    that re-ranks (None: v2's ranking stands)."""

    def __init__(self, embedder: Embedder, search_space: SearchSpace, config: PipelineConfig,
                 reranker: Reranker | None = None):
        self.embedder = embedder
        self.search_space = search_space
        self.config = config
        self.reranker = reranker

    def config_for(self, moment: float | None) -> PipelineConfig:
        """The configuration that ranks a frame taken at ``moment`` (seconds). The reranker ranks
        only frames taken after everything it learned from (a model that learned from a frame's own
        labels would leak them into its prediction); otherwise, and while untrained, v3 ranks as v2."""
        if not self.config.rerank:
            return self.config
        trained_until = self.reranker.trained_until if self.reranker is not None else None
        if self.reranker is not None and (trained_until is None or (moment is not None and trained_until < moment)):
            return self.config
        return replace(self.config, version="v2", rerank=False)

    def embed_boxes(self, image: Image.Image, boxes: Sequence[Bbox]) -> np.ndarray:
        return self.embedder.embed(crop_boxes(image, boxes))

    def predict(
        self,
        image: Image.Image,
        boxes: Sequence[Bbox],
        context: FrameContext,
        history: ShelfHistory | None = None,
        previous: PreviousFrame | None = None,
    ) -> list[list[Candidate]]:
        """Ranked candidates for every box of one frame."""
        return self.rank(self.embed_boxes(image, boxes), boxes, context, history, previous)

    def rank(
        self,
        vectors: np.ndarray,
        boxes: Sequence[Bbox],
        context: FrameContext,
        history: ShelfHistory | None = None,
        previous: PreviousFrame | None = None,
    ) -> list[list[Candidate]]:
        return rank_candidates(vectors, boxes, context, history, previous, search_space=self.search_space,
                               config=self.config_for(context.captured_at), reranker=self.reranker)


def normalise_boxes(boxes: Sequence[Bbox] | np.ndarray, width: float, height: float) -> np.ndarray:
    """Pixel boxes (B, 4) as fractions of their frame."""
    return np.asarray(boxes, np.float64).reshape(-1, 4) / np.array([width, height, width, height], np.float64)


def rank_candidates(
    vectors: np.ndarray,
    boxes: Sequence[Bbox],
    context: FrameContext,
    history: ShelfHistory | None = None,
    previous: PreviousFrame | None = None,
    *,
    search_space: SearchSpace,
    config: PipelineConfig,
    reranker: Reranker | None = None,
) -> list[list[Candidate]]:
    """Candidates for a frame's boxes from their embeddings (one row per box): kNN; realgram when
    the config has it and the shelf has history; tracking when the config has it and the camera's
    previous frame is given; the reranker when the config re-ranks and a model is given."""
    neighbours = search_space.search(vectors, company_id=context.company_id, limit=config.knn_neighbours)
    candidates = [aggregate_neighbours(box_neighbours, config.top_k) for box_neighbours in neighbours]
    normalised = normalise_boxes(boxes, context.width, context.height)
    if config.realgram is not None and history is not None and len(history) and context.captured_at is not None:
        scores = realgram_scores(history, normalised, context.captured_at, config.realgram)
        candidates = apply_realgram(candidates, scores, config.top_k)
    if config.tracking is not None and previous is not None and len(previous):
        tracks = match_tracks(previous, normalised, vectors, context.captured_at, config.tracking)
        candidates = apply_tracking(candidates, tracks, config.top_k)
    if config.rerank and reranker is not None:
        candidates = reranker.rerank(candidates, normalised, context.width / context.height)
    return candidates
