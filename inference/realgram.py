"""Realgram: what was annotated on this shelf recently, near this crop, as evidence for a product.

A planogram is what should be on a shelf; a realgram is what was actually there. For a new frame,
each box's kNN candidates are rescored with the shelf's annotations of the last ``window_days``:

1. history: the annotated boxes of the shelf's frames taken before this one, inside the window;
2. per product, its count is the maximum number of boxes it had in any one annotated frame
   (annotations [1, 2, 2, 3] and [2, 2, 3, 4] give 1, 2, 2, 3, 4: product 2 counts twice);
3. each annotated box gets a recency coefficient, ``exp(-decay_per_day * age_days)``, and, against
   each crop, a spatial coefficient from the overlap of the two boxes normalised to their frames;
4. a product's coefficient for a crop is the maximum over its annotated boxes of recency x spatial
   (plus an optional share-of-shelf term from its count);
5. scaled by ``weight`` it is added to the candidate's kNN score; a product on the shelf but absent
   from the kNN top-K enters with its realgram score alone. No history: the scores are v0's.

Everything runs on arrays: all boxes of a frame against all history entries in one call.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inference.boxes import iou_matrix
from inference.candidates import Candidate
from inference.config import Config

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class RealgramConfig(Config):
    """Hyperparameters, with the defaults used when nothing is tuned.

    window_days: annotations older than this are ignored (the article uses 30 days).
    decay_per_day: recency = exp(-decay_per_day * age in days); 0 makes every annotation equal.
    overlap_margin: boxes are grown by this fraction of their size on each side before the overlap
        is measured, so a product that shifted a little between photos still overlaps.
    overlap_floor: the spatial coefficient of an annotation that does not overlap the crop at all
        (1 = position does not matter, 0 = only overlapping annotations count).
    overlap_power: spatial = floor + (1 - floor) * IoU ** power; below 1 favours any overlap.
    count_weight: adds count_weight x (the product's share of the shelf's boxes) to its coefficient.
    weight: the global trust in shelf context: the coefficient is scaled by it and added to kNN.
    """

    window_days: float = 30.0
    decay_per_day: float = 0.05
    overlap_margin: float = 0.5
    overlap_floor: float = 0.2
    overlap_power: float = 0.5
    count_weight: float = 0.0
    weight: float = 0.1


@dataclass(frozen=True)
class ShelfHistory:
    """The shelf's annotated boxes, as arrays of one row per box.

    product_ids: (E,) int; boxes: (E, 4) float x, y, w, h normalised to their frame (0..1);
    annotated_at: (E,) float seconds since the epoch (when the annotated frame was taken);
    frame_ids: (E,) int, the annotated frame each box belongs to (for the max-count rule).
    """

    product_ids: np.ndarray
    boxes: np.ndarray
    annotated_at: np.ndarray
    frame_ids: np.ndarray

    @classmethod
    def empty(cls) -> ShelfHistory:
        return cls(np.zeros(0, np.int64), np.zeros((0, 4), np.float64), np.zeros(0, np.float64), np.zeros(0, np.int64))

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[int, tuple[float, float, float, float], float, int]]) -> ShelfHistory:
        """rows: (product_id, normalised box, annotated_at seconds, frame_id)."""
        if not rows:
            return cls.empty()
        products, boxes, times, frames = zip(*rows)
        return cls(np.asarray(products, np.int64), np.asarray(boxes, np.float64).reshape(-1, 4),
                   np.asarray(times, np.float64), np.asarray(frames, np.int64))

    def __len__(self) -> int:
        return len(self.product_ids)

    def before(self, moment: float, window_days: float) -> ShelfHistory:
        """Only what was annotated strictly before ``moment`` and inside the window."""
        keep = (self.annotated_at < moment) & (self.annotated_at >= moment - window_days * SECONDS_PER_DAY)
        return ShelfHistory(self.product_ids[keep], self.boxes[keep], self.annotated_at[keep], self.frame_ids[keep])


def combined_counts(product_ids: np.ndarray, frame_ids: np.ndarray) -> dict[int, int]:
    """Per product, the largest number of boxes it had in any one annotated frame."""
    if len(product_ids) == 0:
        return {}
    pairs, per_frame = np.unique(np.stack([product_ids, frame_ids], axis=1), axis=0, return_counts=True)
    counts: dict[int, int] = {}
    for (product, _frame), count in zip(pairs.tolist(), per_frame.tolist()):
        counts[product] = max(counts.get(product, 0), count)
    return counts


@dataclass(frozen=True)
class RealgramScores:
    """Per crop and shelf product: the realgram score and what it is made of.

    product_ids: (P,); score: (B, P) already scaled by the weight; recency, spatial: (B, P) of the
    annotated box that gave each maximum; count: (P,) the max-count rule's counts; share: (P,)
    each product's share of those counts (how much of the shelf it holds).
    """

    product_ids: np.ndarray
    score: np.ndarray
    recency: np.ndarray
    spatial: np.ndarray
    count: np.ndarray
    share: np.ndarray


def realgram_scores(history: ShelfHistory, crops: np.ndarray, moment: float, config: RealgramConfig) -> RealgramScores:
    """Realgram scores of every shelf product for every crop (B, 4 normalised x, y, w, h) of a frame
    taken at ``moment`` (seconds). History after the moment or outside the window is ignored."""
    history = history.before(moment, config.window_days)
    crops = np.asarray(crops, np.float64).reshape(-1, 4)
    if len(history) == 0:
        empty = np.zeros((len(crops), 0))
        return RealgramScores(np.zeros(0, np.int64), empty, empty, empty, np.zeros(0), np.zeros(0))
    age_days = (moment - history.annotated_at) / SECONDS_PER_DAY
    recency = np.exp(-config.decay_per_day * age_days)  # (E,)
    iou = iou_matrix(crops, history.boxes, config.overlap_margin)  # (B, E)
    spatial = config.overlap_floor + (1 - config.overlap_floor) * iou ** config.overlap_power
    coefficient = recency[None, :] * spatial  # (B, E)

    # Best annotated box per (crop, product): sort entries by product, reduce each run.
    order = np.argsort(history.product_ids, kind="stable")
    sorted_products = history.product_ids[order]
    product_ids, starts = np.unique(sorted_products, return_index=True)
    sorted_coefficient = coefficient[:, order]
    best = np.maximum.reduceat(sorted_coefficient, starts, axis=1)  # (B, P)
    # Which entry gave the maximum, to report its recency and overlap.
    is_best = sorted_coefficient == np.repeat(best, np.diff(np.append(starts, len(order))), axis=1)
    entry_rank = np.where(is_best, np.arange(len(order))[None, :], len(order))
    best_entry = np.minimum.reduceat(entry_rank, starts, axis=1)
    best_recency = recency[order][best_entry]
    best_spatial = np.take_along_axis(spatial[:, order], best_entry, axis=1)

    counts_by_product = combined_counts(history.product_ids, history.frame_ids)
    count = np.asarray([counts_by_product[p] for p in product_ids.tolist()], np.float64)
    share = count / count.sum()
    score = config.weight * (best + config.count_weight * share[None, :])
    return RealgramScores(product_ids, score, best_recency, best_spatial, count, share)


def apply_realgram(candidates: Sequence[Sequence[Candidate]], scores: RealgramScores, top_k: int) -> list[list[Candidate]]:
    """Add each crop's realgram scores to its kNN candidates; shelf products missing from the kNN
    list join with their realgram score alone. Re-ranked, best first, ``top_k`` kept."""
    if scores.product_ids.size == 0:
        return [list(box_candidates)[:top_k] for box_candidates in candidates]
    column = {product: index for index, product in enumerate(scores.product_ids.tolist())}
    ranked = []
    for box, box_candidates in enumerate(candidates):
        merged: dict[int, Candidate] = {
            c.product_id: Candidate(c.product_id, c.score, {**c.components}) for c in box_candidates
        }
        for product, index in column.items():
            candidate = merged.setdefault(product, Candidate(product, 0.0, {"knn": 0.0}))
            added = float(scores.score[box, index])
            candidate.score += added
            candidate.components.update(
                realgram=added,
                realgram_recency=float(scores.recency[box, index]),
                realgram_overlap=float(scores.spatial[box, index]),
                realgram_count=float(scores.count[index]),
                realgram_share=float(scores.share[index]),
            )
        ranked.append(sorted(merged.values(), key=lambda c: (-c.score, c.product_id))[:top_k])
    return ranked
