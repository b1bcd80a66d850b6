"""The second-level model (v3): a gradient-boosted classifier over each box's top-K candidates.

v1 and v2 add hand-weighted evidence (kNN, realgram, tracking) into one score. The reranker looks at
the whole candidate list of a box instead: for every (box, candidate) pair it reads the components
the earlier stages left, the candidate's rank and its gap to the leader, and the box's geometry,
and predicts the probability that the candidate is the box's product. Candidates are re-ranked by
that probability, which becomes their score (and the ``reranker`` component).

LightGBM: a 10 MB wheel with no GPU stack, trains thousands of rows in well under a second on two
cores and predicts a frame's few hundred rows in about a millisecond (XGBoost's wheel pulls in a
CUDA runtime of some hundreds of MB; CatBoost's is about 100 MB).

Training rows come from replays (``inference.replay.collect_reranker_rows``): each frame's features
are computed when the frame is predicted, from what was annotated before it, and labelled with its
truth afterwards, so a label never reaches the features of a frame taken before it was made.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inference.candidates import Candidate

FORMAT = "shelf-annotator/reranker-lightgbm/1"

# Component scores read from the candidates; absent ones (a stage that did not run) are 0.
COMPONENTS = (
    "knn", "knn_mean", "knn_count",
    "realgram", "realgram_recency", "realgram_overlap", "realgram_count", "realgram_share",
    "tracking", "tracking_similarity", "tracking_iou", "tracking_confirmed",
)
FEATURES = (
    "score", "rank", "score_gap", "knn_rank", "knn_gap", "candidates", *COMPONENTS,
    "box_x", "box_y", "box_w", "box_h", "box_aspect",
)

BOOSTING_ROUNDS = 300
DEFAULT_BALANCE = 0.5
DEFAULT_PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "feature_fraction": 0.8,
    "lambda_l2": 1.0,
    "seed": 0,
    # The same rows give the same model, on any machine.
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "verbose": -1,
}


@dataclass(frozen=True)
class CandidateFeatures:
    """Features of every (box, candidate) pair of a frame: ``values`` (N, len(FEATURES)) and, per
    row, the box index and the candidate's product id."""

    values: np.ndarray
    box_index: np.ndarray
    product_ids: np.ndarray


def candidate_features(candidates: Sequence[Sequence[Candidate]], boxes: np.ndarray, aspect: float) -> CandidateFeatures:
    """``candidates``: each box's ranked list (best first) from the earlier stages; ``boxes``
    (B, 4) x, y, w, h normalised to the frame; ``aspect``: the frame's width / height."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    rows: list[list[float]] = []
    box_index: list[int] = []
    product_ids: list[int] = []
    for box, box_candidates in enumerate(candidates):
        if not box_candidates:
            continue
        top_score = box_candidates[0].score
        knn = np.array([c.components.get("knn", 0.0) for c in box_candidates])
        knn_rank = np.argsort(np.argsort(-knn, kind="stable"), kind="stable")
        x, y, w, h = boxes[box]
        geometry = [x, y, w, h, (w * aspect) / h if h > 0 else 0.0]
        for rank, candidate in enumerate(box_candidates):
            rows.append([
                candidate.score, rank, top_score - candidate.score, knn_rank[rank], knn.max() - knn[rank],
                len(box_candidates), *(candidate.components.get(name, 0.0) for name in COMPONENTS), *geometry,
            ])
            box_index.append(box)
            product_ids.append(candidate.product_id)
    return CandidateFeatures(np.asarray(rows, np.float64).reshape(-1, len(FEATURES)),
                             np.asarray(box_index, np.int64), np.asarray(product_ids, np.int64))


@dataclass
class TrainingRows:
    """Labelled feature rows gathered over frames: ``labels`` 1 where the candidate is the box's
    product; ``frame_ids`` and ``moments`` (seconds, the frame's capture) say where each row came from."""

    values: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    truths: list[np.ndarray] = field(default_factory=list)
    frame_ids: list[np.ndarray] = field(default_factory=list)
    moments: list[np.ndarray] = field(default_factory=list)

    def add(self, features: CandidateFeatures, truth: np.ndarray, frame_id: int, moment: float) -> None:
        """Label a frame's features with its truth (one product id per box)."""
        if len(features.values) == 0:
            return
        truth = np.asarray(truth, np.int64)
        self.values.append(features.values)
        self.labels.append((features.product_ids == truth[features.box_index]).astype(np.int8))
        self.truths.append(truth[features.box_index])
        self.frame_ids.append(np.full(len(features.values), frame_id, np.int64))
        self.moments.append(np.full(len(features.values), moment, np.float64))

    def __len__(self) -> int:
        return sum(len(v) for v in self.values)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Feature values, labels and the truth of each row's box."""
        if not self.values:
            return np.zeros((0, len(FEATURES))), np.zeros(0, np.int8), np.zeros(0, np.int64)
        return np.concatenate(self.values), np.concatenate(self.labels), np.concatenate(self.truths)

    @property
    def latest_moment(self) -> float | None:
        finite = [m[np.isfinite(m)] for m in self.moments]
        finite = [m for m in finite if len(m)]
        return float(max(m.max() for m in finite)) if finite else None


class Reranker:
    """A trained second-level model. ``trained_until``: the capture time (seconds) of the latest
    frame it learned from: only frames taken after it may be predicted without leakage."""

    def __init__(self, booster, *, trained_until: float | None = None, metrics: dict | None = None):
        self.booster = booster
        self.trained_until = trained_until
        self.metrics = dict(metrics or {})

    def probabilities(self, features: CandidateFeatures) -> np.ndarray:
        if len(features.values) == 0:
            return np.zeros(0)
        return self.booster.predict(features.values, num_threads=1)

    def rerank(self, candidates: Sequence[Sequence[Candidate]], boxes: np.ndarray, aspect: float) -> list[list[Candidate]]:
        """Every box's candidates scored by the model's probability, best first; the earlier
        stages' score stays as the ``pre_rerank`` component."""
        features = candidate_features(candidates, boxes, aspect)
        probability = self.probabilities(features).tolist()
        ranked: list[list[Candidate]] = [[] for _ in candidates]
        for box, product, p in zip(features.box_index.tolist(), features.product_ids.tolist(), probability):
            original = next(c for c in candidates[box] if c.product_id == product)
            ranked[box].append(Candidate(product, p, {**original.components, "pre_rerank": original.score,
                                                       "reranker": p}))
        return [sorted(box_candidates, key=lambda c: (-c.score, c.product_id)) for box_candidates in ranked]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "format": FORMAT, "features": list(FEATURES), "trained_until": self.trained_until,
            "metrics": self.metrics, "model": self.booster.model_to_string(),
        }))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Reranker:
        """Raises ValueError (naming the file) for anything but a reranker saved by this version."""
        import lightgbm

        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: not a reranker model ({error})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a reranker model (format {data.get('format') if isinstance(data, dict) else None!r})")
        if data.get("features") != list(FEATURES):
            raise ValueError(f"{path}: trained on other features; retrain it with train_reranker")
        booster = lightgbm.Booster(model_str=data["model"])
        return cls(booster, trained_until=data.get("trained_until"), metrics=data.get("metrics"))


def class_balance_weights(truths: np.ndarray, balance: float) -> np.ndarray:
    """Per row, ``count(its box's product) ** -balance``, scaled to mean 1: 0 weighs every box
    alike (a catch-all class then dominates what is learned), 1 weighs every product alike."""
    _, inverse, counts = np.unique(truths, return_inverse=True, return_counts=True)
    weights = counts[inverse].astype(np.float64) ** -balance
    return weights / weights.mean()


def fit_reranker(rows: TrainingRows, params: dict | None = None, rounds: int = BOOSTING_ROUNDS,
                 balance: float = DEFAULT_BALANCE) -> Reranker:
    """Train on ``rows``, each box weighted by ``class_balance_weights``. Raises ValueError when
    they hold no positive or no negative example (nothing to learn: every candidate list was right,
    or the truth was never among them)."""
    import lightgbm

    values, labels, truths = rows.arrays()
    if len(values) == 0 or labels.min() == labels.max():
        raise ValueError(f"cannot train a reranker on {len(values)} rows with {int(labels.sum())} positives: "
                         "it needs candidates that are the product and candidates that are not")
    data = lightgbm.Dataset(values, labels, weight=class_balance_weights(truths, balance), feature_name=list(FEATURES))
    booster = lightgbm.train({**DEFAULT_PARAMS, **(params or {})}, data, num_boost_round=rounds)
    metrics = {"rows": int(len(values)), "positives": int(labels.sum()), "balance": balance,
               "frames": int(len(np.unique(np.concatenate(rows.frame_ids))))}
    return Reranker(booster, trained_until=rows.latest_moment, metrics=metrics)
