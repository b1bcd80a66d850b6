"""The candidate record that flows through every stage, and the kNN aggregation that makes it.

A stage may add a component score or re-rank, never drop components: the workspace shows them to
the annotator as the reason for a suggestion.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Neighbour:
    """One annotated crop returned by the search space."""

    product_id: int
    score: float  # cosine similarity
    box_id: int


@dataclass
class Candidate:
    """A product proposed for a box, its final score and what the score is made of."""

    product_id: int
    score: float
    components: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"product_id": self.product_id, "score": self.score, "components": dict(self.components)}


def aggregate_neighbours(neighbours: Sequence[Neighbour], top_k: int) -> list[Candidate]:
    """Turn one box's neighbours into candidates: each product scored by its best neighbour
    (the v0 rule), with the neighbour count and mean score kept as components. Best first."""
    best: dict[int, float] = {}
    total: dict[int, float] = {}
    count: dict[int, int] = {}
    for neighbour in neighbours:
        pid = neighbour.product_id
        best[pid] = max(best.get(pid, float("-inf")), neighbour.score)
        total[pid] = total.get(pid, 0.0) + neighbour.score
        count[pid] = count.get(pid, 0) + 1
    candidates = [
        Candidate(
            product_id=pid,
            score=score,
            components={"knn": score, "knn_mean": total[pid] / count[pid], "knn_count": float(count[pid])},
        )
        for pid, score in best.items()
    ]
    # Ties broken by product id so the same neighbours always give the same ranking.
    candidates.sort(key=lambda c: (-c.score, c.product_id))
    return candidates[:top_k]


def frame_confidence(candidates: Sequence[Sequence[Candidate]]) -> float | None:
    """How sure the pipeline is about a frame: the mean over its boxes of the margin between the
    first candidate's score and the second's (the first's alone when it has no rival, 0 for a box
    with no candidate). None for a frame without boxes. Margin, not the top score, because a close
    runner-up is what makes a suggestion a guess, whatever the scale of the scores."""
    if not candidates:
        return None
    margins = [
        (box[0].score - (box[1].score if len(box) > 1 else 0.0)) if box else 0.0
        for box in candidates
    ]
    return float(sum(margins) / len(margins))
