"""Tracking (v2): carry the previous frame's answer forward to the facing that is still there.

Between consecutive frames of one camera most facings do not move. For a new frame:

1. the camera's shift between the two frames is estimated and undone (camera motion compensation,
   as in BoT-SORT): every pair of boxes that are each other's most similar crop, above
   ``min_similarity``, votes with its displacement, and the median vote wins; a fixed camera
   votes for no shift, a hand-held or re-aimed one for the window's move;
2. the frame's boxes are matched one to one with the shifted previous boxes by IoU (optimal
   assignment, pairs under ``min_iou`` never match);
3. each matched pair is compared by the cosine similarity of the two crops' embeddings: the same
   place with a different-looking product is a restock, not the same facing;
4. above ``min_similarity`` the previous box's product is carried forward: its confirmed label when
   it has one (``label_weight``), otherwise its top-1 prediction (``prediction_weight``). The carried
   product's score grows by weight x similarity and the evidence joins its components.

A modified DeepSORT without motion model: shelf cameras are fixed, so position plus appearance is
the whole track. Everything is array work over the frame, but for the final per-box re-rank.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inference.boxes import iou_matrix, match_boxes
from inference.candidates import Candidate
from inference.config import Config

SECONDS_PER_HOUR = 3_600.0


@dataclass(frozen=True)
class TrackingConfig(Config):
    """Hyperparameters, with the defaults used when nothing is tuned.

    min_iou: the overlap (boxes normalised to their frames) two boxes need to be the same facing.
    min_similarity: the cosine similarity of their crops needed to carry the previous answer.
    label_weight: score added (x similarity) to a product a person confirmed on the previous frame.
    prediction_weight: the same for the previous frame's top-1 prediction, trusted less.
    max_gap_hours: a previous frame older than this is not consecutive: nothing is carried.
    min_motion_votes: mutual-best pairs needed to estimate the camera's shift (fewer: no shift).
    """

    min_iou: float = 0.3
    min_similarity: float = 0.75
    label_weight: float = 1.0
    prediction_weight: float = 0.15
    max_gap_hours: float = 24.0
    min_motion_votes: float = 3


@dataclass(frozen=True)
class PreviousFrame:
    """What the camera's previous frame showed and what was decided about it, one row per box.

    boxes: (M, 4) x, y, w, h normalised to the frame (0..1); vectors: (M, D) crop embeddings;
    product_ids: (M,) the product to carry (-1: none, e.g. a box deleted as not a product);
    confirmed: (M,) True where ``product_ids`` is a person's label, False where it is a prediction;
    captured_at: seconds since the epoch (None: unknown, the gap is not checked).
    """

    boxes: np.ndarray
    vectors: np.ndarray
    product_ids: np.ndarray
    confirmed: np.ndarray
    captured_at: float | None = None

    def __post_init__(self) -> None:
        rows = {len(self.boxes), len(self.vectors), len(self.product_ids), len(self.confirmed)}
        if len(rows) != 1:
            raise ValueError(f"previous frame arrays disagree on the number of boxes: {sorted(rows)}")

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass(frozen=True)
class Tracks:
    """The current frame's boxes that continue a previous box, as parallel arrays.

    current, previous: (T,) box indices in the two frames; iou, similarity: (T,);
    product_ids: (T,) the carried product; confirmed: (T,) whether it was a person's label;
    weight: (T,) the score added to the carried product (0 where similarity is under the threshold).
    """

    current: np.ndarray
    previous: np.ndarray
    iou: np.ndarray
    similarity: np.ndarray
    product_ids: np.ndarray
    confirmed: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.current)


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float64)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True).clip(1e-12)


def camera_shift(previous: np.ndarray, current: np.ndarray, similarities: np.ndarray,
                 config: TrackingConfig) -> np.ndarray:
    """The (dx, dy, 0, 0) that moves the previous frame's boxes (M, 4) onto the current ones (B, 4):
    the median displacement of the pairs that are each other's most similar crop, above
    ``min_similarity``. Zero when fewer than ``min_motion_votes`` pairs agree to vote."""
    best_current = similarities.argmax(axis=1)  # (M,)
    best_previous = similarities.argmax(axis=0)  # (B,)
    voters = np.flatnonzero(best_previous[best_current] == np.arange(len(previous)))
    voters = voters[similarities[voters, best_current[voters]] >= config.min_similarity]
    if len(voters) < config.min_motion_votes:
        return np.zeros(4)
    centre = lambda b: b[:, :2] + b[:, 2:] / 2  # noqa: E731
    moves = centre(current[best_current[voters]]) - centre(previous[voters])
    dx, dy = np.median(moves, axis=0)
    return np.array([dx, dy, 0.0, 0.0])


def match_tracks(previous: PreviousFrame | None, boxes: np.ndarray, vectors: np.ndarray,
                 moment: float | None, config: TrackingConfig) -> Tracks:
    """Match the frame's boxes (B, 4 normalised) and embeddings (B, D), taken at ``moment``
    (seconds), to the camera's previous frame."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    stale = (previous is not None and previous.captured_at is not None and moment is not None
             and not 0 <= moment - previous.captured_at <= config.max_gap_hours * SECONDS_PER_HOUR)
    if previous is None or stale or len(previous) == 0 or len(boxes) == 0:
        pairs = []
    else:
        similarities = _unit(previous.vectors) @ _unit(np.asarray(vectors)).T  # (M, B)
        shifted = previous.boxes + camera_shift(previous.boxes, boxes, similarities, config)
        pairs = match_boxes(shifted, boxes, config.min_iou)
    if not pairs:
        empty_int, empty_float = np.zeros(0, np.int64), np.zeros(0, np.float64)
        return Tracks(empty_int, empty_int, empty_float, empty_float, empty_int, np.zeros(0, bool), empty_float)
    before, now = (np.asarray(side, np.int64) for side in zip(*pairs))
    iou = iou_matrix(shifted[before], boxes[now]).diagonal()
    similarity = similarities[before, now]
    products = np.asarray(previous.product_ids, np.int64)[before]
    confirmed = np.asarray(previous.confirmed, bool)[before]
    weight = np.where(confirmed, config.label_weight, config.prediction_weight) * similarity
    weight = np.where((similarity >= config.min_similarity) & (products >= 0), weight, 0.0)
    return Tracks(now, before, iou, similarity, products, confirmed, weight)


def apply_tracking(candidates: Sequence[Sequence[Candidate]], tracks: Tracks, top_k: int) -> list[list[Candidate]]:
    """Add each track's weight to the carried product of its box (joining the list with its
    tracking score alone when absent from it); re-ranked, best first, ``top_k`` kept. Boxes
    without a carried product keep their ranking."""
    ranked = [list(box_candidates) for box_candidates in candidates]
    for box, similarity, iou, product, confirmed, weight in zip(
            tracks.current.tolist(), tracks.similarity.tolist(), tracks.iou.tolist(), tracks.product_ids.tolist(),
            tracks.confirmed.tolist(), tracks.weight.tolist()):
        if weight <= 0:
            continue
        merged = {c.product_id: Candidate(c.product_id, c.score, {**c.components}) for c in ranked[box]}
        carried = merged.setdefault(product, Candidate(product, 0.0, {"knn": 0.0}))
        carried.score += weight
        carried.components.update(tracking=weight, tracking_similarity=similarity, tracking_iou=iou,
                                  tracking_confirmed=float(confirmed))
        ranked[box] = sorted(merged.values(), key=lambda c: (-c.score, c.product_id))
    return [box_candidates[:top_k] for box_candidates in ranked]
