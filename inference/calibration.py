"""Calibration: a suggestion's final score turned into the probability that it is right.

Scores from different stages are not probabilities (kNN cosines, realgram adds to them, the reranker
gives its own); what an annotator can act on is "of suggestions scored like this one, how many were
confirmed". An isotonic regression (pool adjacent violators) of correctness on the score, fitted on a
replay, gives exactly that and keeps the ranking: it is monotone in the score.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = "shelf-annotator/calibrator-isotonic/1"


@dataclass(frozen=True)
class Calibrator:
    """A monotone map from score to probability: linear between the knots ``scores`` -> ``probabilities``,
    constant beyond them. ``samples``: how many suggestions it was fitted on."""

    scores: np.ndarray
    probabilities: np.ndarray
    samples: int

    def probability(self, scores: np.ndarray | list[float] | float) -> np.ndarray:
        values = np.asarray(scores, np.float64)
        if len(self.scores) == 0:
            return np.full(values.shape, np.nan)
        return np.interp(values, self.scores, self.probabilities)

    def as_dict(self) -> dict:
        return {"format": FORMAT, "scores": self.scores.tolist(), "probabilities": self.probabilities.tolist(),
                "samples": self.samples}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.as_dict()))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Calibrator:
        """Raises ValueError naming the file for anything but a calibrator saved by this version."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: not a calibrator ({error})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a calibrator (format {data.get('format') if isinstance(data, dict) else None!r})")
        return cls(np.asarray(data["scores"], np.float64), np.asarray(data["probabilities"], np.float64),
                   int(data["samples"]))


def fit_isotonic(scores: np.ndarray, correct: np.ndarray) -> Calibrator:
    """Isotonic (non-decreasing) regression of ``correct`` (0/1) on ``scores`` by pool adjacent
    violators (one linear sweep over the distinct scores, which are pooled first)."""
    scores = np.asarray(scores, np.float64)
    correct = np.asarray(correct, np.float64)
    if len(scores) != len(correct):
        raise ValueError(f"{len(scores)} scores but {len(correct)} outcomes")
    if len(scores) == 0:
        return Calibrator(np.zeros(0), np.zeros(0), 0)
    unique, inverse = np.unique(scores, return_inverse=True)
    weights = np.bincount(inverse).astype(np.float64)
    means = np.bincount(inverse, weights=correct) / weights
    # Blocks: [value, weight, first knot index]; merge neighbours while one exceeds the next.
    values, block_weights, starts = list(means), list(weights), list(range(len(unique)))
    index = 0
    while index < len(values) - 1:
        if values[index] > values[index + 1]:
            total = block_weights[index] + block_weights[index + 1]
            values[index] = (values[index] * block_weights[index] + values[index + 1] * block_weights[index + 1]) / total
            block_weights[index] = total
            del values[index + 1], block_weights[index + 1], starts[index + 1]
            index = max(index - 1, 0)
        else:
            index += 1
    # Each block spans knots starts[i] .. starts[i+1]-1: keep its two ends so interpolation is flat inside.
    ends = [*starts[1:], len(unique)]
    knots, probabilities = [], []
    for value, start, end in zip(values, starts, ends):
        for knot in sorted({start, end - 1}):
            knots.append(unique[knot])
            probabilities.append(value)
    return Calibrator(np.asarray(knots), np.clip(np.asarray(probabilities), 0.0, 1.0), int(len(scores)))


def expected_calibration_error(probabilities: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Mean |confidence - accuracy| over equal-width probability bins, weighted by their share."""
    probabilities = np.asarray(probabilities, np.float64)
    correct = np.asarray(correct, np.float64)
    if len(probabilities) == 0:
        return 0.0
    which = np.minimum((probabilities * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    confidence = np.bincount(which, weights=probabilities, minlength=bins)
    hits = np.bincount(which, weights=correct, minlength=bins)
    filled = counts > 0
    return float(np.sum(np.abs(confidence[filled] - hits[filled])) / len(probabilities))


def cross_fitted_error(scores: np.ndarray, correct: np.ndarray, groups: np.ndarray) -> float:
    """The calibration error a calibrator shows on data it was not fitted on: fit on the even groups
    (frames), measure on the odd ones, and the reverse; the mean of the two."""
    scores, correct, groups = np.asarray(scores), np.asarray(correct), np.asarray(groups)
    halves = groups % 2 == 0
    errors = []
    for fit_half in (halves, ~halves):
        if fit_half.any() and (~fit_half).any():
            calibrator = fit_isotonic(scores[fit_half], correct[fit_half])
            errors.append(expected_calibration_error(calibrator.probability(scores[~fit_half]), correct[~fit_half]))
    return float(np.mean(errors)) if errors else 0.0
