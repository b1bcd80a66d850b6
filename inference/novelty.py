"""New-product scoring: the probability that a box shows none of the products the search space knows.

A crop of a product nobody has labelled yet still gets neighbours, just poor ones: the nearest crop is
further away than usual, the best product barely beats the next one, and the top neighbours disagree
about which product they are. Those three signals, read off the kNN result a box already has, are the
features (:func:`neighbour_features`, vectorised over a frame). A small logistic model (numpy, Newton
steps with a ridge penalty) turns them into a probability; it is fitted on replays where some products
are held out of the gallery, so the target "the true product was not in the gallery" is known for every
query (:func:`fit_novelty`). A logistic model fitted by maximum likelihood is calibrated on the data it
was fitted on, so its output can be shown as a probability and compared with a threshold.

Neighbour arrays, one row per box, best first: ``scores`` (n, k) cosine similarities and
``product_ids`` (n, k) ints; a slot without a neighbour has product id ``MISSING`` (its score is ignored).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = "shelf-annotator/novelty-logistic/1"
MISSING = -1
FEATURES = ("top1", "margin", "agreement", "mean_top_k", "has_neighbours")
# The score a missing neighbour or a missing rival product counts as: an unrelated crop.
EMPTY_SCORE = 0.0


def neighbour_features(scores: np.ndarray, product_ids: np.ndarray, top_k: int | None = None) -> np.ndarray:
    """Features of each box's neighbours, (n, len(FEATURES)) float64, columns as in ``FEATURES``:

    - ``top1``: the nearest neighbour's cosine (``EMPTY_SCORE`` without neighbours);
    - ``margin``: ``top1`` less the best cosine of a neighbour of another product (``EMPTY_SCORE`` when
      every neighbour is of the top product, so a lone product has margin ``top1``);
    - ``agreement``: the share of the first ``top_k`` present neighbours whose product is the top one's;
    - ``mean_top_k``: the mean cosine of those neighbours;
    - ``has_neighbours``: 1 when the box has any neighbour.

    ``top_k``: how many neighbours agreement and the mean look at (all ``k`` columns when None).
    """
    scores = np.asarray(scores, np.float64)
    product_ids = np.asarray(product_ids)
    if scores.ndim != 2 or scores.shape != product_ids.shape:
        raise ValueError(f"scores {scores.shape} and product ids {product_ids.shape} must be the same (n, k)")
    n, k = scores.shape
    if k == 0:
        out = np.zeros((n, len(FEATURES)))
        out[:, :4] = EMPTY_SCORE
        return out
    present = product_ids != MISSING
    # Order each row best first among present neighbours, so callers need not pre-sort or pack.
    ranked = np.where(present, scores, -np.inf)
    order = np.argsort(-ranked, axis=1, kind="stable")
    scores = np.take_along_axis(scores, order, axis=1)
    product_ids = np.take_along_axis(product_ids, order, axis=1)
    present = np.take_along_axis(present, order, axis=1)
    has = present[:, 0]
    top1 = np.where(has, scores[:, 0], EMPTY_SCORE)
    top_product = product_ids[:, [0]]
    rival = present & (product_ids != top_product)
    second = np.where(rival, scores, -np.inf).max(axis=1)
    second = np.where(np.isfinite(second), second, EMPTY_SCORE)
    margin = np.where(has, top1 - second, 0.0)
    window = min(k, top_k) if top_k else k
    in_window = present[:, :window]
    counted = in_window.sum(axis=1)
    same = (in_window & (product_ids[:, :window] == top_product)).sum(axis=1)
    agreement = np.where(counted > 0, same / np.maximum(counted, 1), 0.0)
    total = np.where(in_window, scores[:, :window], 0.0).sum(axis=1)
    mean_top_k = np.where(counted > 0, total / np.maximum(counted, 1), EMPTY_SCORE)
    return np.column_stack([top1, margin, agreement, mean_top_k, has.astype(np.float64)])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function without overflow


def fit_logistic(features: np.ndarray, targets: np.ndarray, *, l2: float = 1e-3, iterations: int = 50,
                 tolerance: float = 1e-8) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Logistic regression of 0/1 ``targets`` on ``features`` by Newton's method (iteratively reweighted
    least squares) on standardised columns, with ridge ``l2`` on the weights (not the intercept).
    Returns (weights, intercept, mean, scale): probability = sigmoid(((x - mean) / scale) @ weights + intercept)."""
    x = np.asarray(features, np.float64)
    y = np.asarray(targets, np.float64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features {x.shape} and {len(y)} targets do not match")
    if len(y) == 0:
        raise ValueError("no samples to fit on")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)  # a constant column stays at weight ~0 under the ridge
    design = np.column_stack([(x - mean) / scale, np.ones(len(x))])
    penalty = np.full(design.shape[1], l2 * len(y))
    penalty[-1] = 0.0
    beta = np.zeros(design.shape[1])
    rate = np.clip(y.mean(), 1e-6, 1 - 1e-6)
    beta[-1] = np.log(rate / (1 - rate))
    for _ in range(iterations):
        p = _sigmoid(design @ beta)
        gradient = design.T @ (y - p) - penalty * beta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty) + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.max(np.abs(step)) < tolerance:
            break
    return beta[:-1], float(beta[-1]), mean, scale


@dataclass(frozen=True)
class NoveltyModel:
    """P(a box's product is none of the gallery's) from its neighbours. ``top_k``: the neighbours the
    agreement and mean features look at; ``samples`` / ``novel_share``: what it was fitted on."""

    weights: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray
    top_k: int | None
    samples: int
    novel_share: float

    def predict_proba_features(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, np.float64)
        return _sigmoid(((features - self.mean) / self.scale) @ self.weights + self.intercept)

    def predict_proba(self, scores: np.ndarray, product_ids: np.ndarray) -> np.ndarray:
        """The new-product probability of each box (n,), from its neighbour arrays."""
        return self.predict_proba_features(neighbour_features(scores, product_ids, self.top_k))

    def as_dict(self) -> dict:
        return {"format": FORMAT, "features": list(FEATURES), "weights": self.weights.tolist(),
                "intercept": self.intercept, "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "top_k": self.top_k, "samples": self.samples, "novel_share": self.novel_share}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.as_dict()))
        return path

    @classmethod
    def from_dict(cls, data: dict) -> NoveltyModel:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format') if isinstance(data, dict) else None!r}")
        if list(data.get("features", [])) != list(FEATURES):
            raise ValueError(f"features {data.get('features')!r}, this version computes {list(FEATURES)!r}")
        return cls(np.asarray(data["weights"], np.float64), float(data["intercept"]),
                   np.asarray(data["mean"], np.float64), np.asarray(data["scale"], np.float64),
                   None if data["top_k"] is None else int(data["top_k"]), int(data["samples"]),
                   float(data["novel_share"]))

    @classmethod
    def load(cls, path: str | Path) -> NoveltyModel:
        """Raises ValueError naming the file for anything but a novelty model saved by this version."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: not a novelty model ({error})") from None
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: not a novelty model ({error})") from None


def fit_novelty(scores: np.ndarray, product_ids: np.ndarray, in_gallery: np.ndarray, *, top_k: int | None = None,
                l2: float = 1e-3) -> NoveltyModel:
    """Fit the new-product model on replayed queries: their neighbour arrays and, for each, whether its
    true product was in the gallery when it was searched (False for held-out products: the target)."""
    in_gallery = np.asarray(in_gallery, bool)
    features = neighbour_features(scores, product_ids, top_k)
    if len(features) != len(in_gallery):
        raise ValueError(f"{len(features)} queries but {len(in_gallery)} gallery flags")
    novel = ~in_gallery
    if novel.all() or not novel.any():
        raise ValueError("fitting needs queries both of gallery products and of held-out ones")
    weights, intercept, mean, scale = fit_logistic(features, novel, l2=l2)
    return NoveltyModel(weights, intercept, mean, scale, top_k, int(len(novel)), float(novel.mean()))


def held_out_products(product_ids: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    """A reproducible random ``share`` of the distinct products (at least one), to hold out of a gallery."""
    distinct = np.unique(np.asarray(product_ids))
    count = max(1, int(round(share * len(distinct))))
    return np.sort(np.random.default_rng(seed).choice(distinct, size=min(count, len(distinct)), replace=False))
