"""Label noise: which labelled crops look like another product than the one they carry.

Two signals per crop, both from its embedding and everybody else's labels, combined into one
``suspicion`` in [0, 1]:

- neighbour disagreement: the share of its ``k`` nearest labelled crops (itself left out) that
  carry another label (cleanlab's kNN view of self-confidence, without its AGPL code);
- centre confidence: a softmax over its cosine similarity to every product's centre (the mean of
  that product's unit embeddings, the crop itself left out of its own), read at its own product.

``suspicion = 1 - (agreement + centre_confidence) / 2``. Products are ranked by their share of
suspicious crops, and confusable pairs are products whose crops are each other's nearest
neighbours across the label boundary. Everything is numpy over blocks of crops, so a company's
labelled crops are scored without an N x N matrix in memory.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from inference.config import Config


@dataclass(frozen=True)
class NoiseConfig(Config):
    """k: neighbours read per crop. temperature: of the softmax over centre similarities (cosines
    are close together: a low temperature separates them). threshold: suspicion above which a crop
    counts as suspicious. block: crops compared at a time (memory: block x N floats)."""

    k: int = 10
    temperature: float = 0.05
    threshold: float = 0.5
    block: int = 2048


@dataclass(frozen=True)
class NoiseScores:
    """Per crop (N,): ``suspicion``, ``agreement`` (share of neighbours with the same label),
    ``centre_confidence``, ``nearest_other``: the product of its nearest differently-labelled
    neighbour (-1: none among the k), and ``neighbours`` (N, k) indices of its nearest crops."""

    suspicion: np.ndarray
    agreement: np.ndarray
    centre_confidence: np.ndarray
    nearest_other: np.ndarray
    neighbours: np.ndarray


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)


def nearest_neighbours(vectors: np.ndarray, k: int, block: int = 2048) -> np.ndarray:
    """(N, k) indices of each row's k most similar other rows (cosine), best first."""
    unit = _unit(vectors)
    n = len(unit)
    k = min(k, n - 1)
    result = np.zeros((n, max(k, 0)), np.int64)
    if k <= 0:
        return result
    for start in range(0, n, block):
        scores = unit[start:start + block] @ unit.T
        rows = np.arange(len(scores))
        scores[rows, start + rows] = -np.inf  # a crop is not its own neighbour
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        result[start:start + block] = np.take_along_axis(top, order, axis=1)
    return result


def score_label_noise(vectors: np.ndarray, labels: np.ndarray, config: NoiseConfig = NoiseConfig()) -> NoiseScores:
    """Suspicion of every labelled crop (``vectors`` (N, D), ``labels`` (N,) product ids)."""
    labels = np.asarray(labels, np.int64)
    unit = _unit(vectors)
    neighbours = nearest_neighbours(unit, config.k, config.block)
    if neighbours.shape[1]:
        same = labels[neighbours] == labels[:, None]
        agreement = same.mean(axis=1)
        other = np.where(~same, labels[neighbours], -1)
        first_other = np.argmax(~same, axis=1)
        nearest_other = np.where((~same).any(axis=1), other[np.arange(len(labels)), first_other], -1)
    else:
        agreement = np.ones(len(labels))
        nearest_other = np.full(len(labels), -1)

    products, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    sums = np.zeros((len(products), unit.shape[1]), np.float64)
    np.add.at(sums, index, unit)
    centre_confidence = np.ones(len(labels))
    if len(products) > 1:
        for start in range(0, len(labels), config.block):
            rows = slice(start, start + config.block)
            own = index[rows]
            similarity = unit[rows] @ _unit(sums).T  # to every centre
            # The crop's own product's centre without the crop itself, so a lone wrong label is not
            # its own evidence.
            leave_out = sums[own] - unit[rows]
            alone = counts[own] == 1
            own_norm = np.linalg.norm(leave_out, axis=1).clip(1e-12)
            own_similarity = np.where(alone, -1.0, np.sum(unit[rows] * leave_out, axis=1) / own_norm)
            similarity[np.arange(len(own)), own] = own_similarity
            logits = (similarity - similarity.max(axis=1, keepdims=True)) / config.temperature
            probabilities = np.exp(logits)
            probabilities /= probabilities.sum(axis=1, keepdims=True)
            centre_confidence[rows] = probabilities[np.arange(len(own)), own]
    suspicion = 1 - (agreement + centre_confidence) / 2
    return NoiseScores(suspicion, agreement, centre_confidence, nearest_other, neighbours)


@dataclass(frozen=True)
class ProductNoise:
    product_id: int
    crops: int
    suspicious: int

    @property
    def share(self) -> float:
        return self.suspicious / self.crops if self.crops else 0.0


def rank_products(labels: np.ndarray, scores: NoiseScores, threshold: float) -> list[ProductNoise]:
    """Products by their share of suspicious crops, worst first (ties: more suspicious crops first)."""
    labels = np.asarray(labels, np.int64)
    suspicious = scores.suspicion > threshold
    products, index = np.unique(labels, return_inverse=True)
    crops = np.bincount(index)
    flagged = np.bincount(index, weights=suspicious).astype(int)
    ranked = [ProductNoise(int(p), int(c), int(f)) for p, c, f in zip(products, crops, flagged)]
    return sorted(ranked, key=lambda p: (-p.share, -p.suspicious, p.product_id))


def confusable_pairs(labels: np.ndarray, scores: NoiseScores, limit: int = 20) -> list[tuple[int, int, int]]:
    """(product a, product b, mutual pairs) with a < b: how many crops of a and crops of b are each
    other's nearest neighbour, most first."""
    labels = np.asarray(labels, np.int64)
    if scores.neighbours.shape[1] == 0:
        return []
    nearest = scores.neighbours[:, 0]
    mutual = np.flatnonzero(nearest[nearest] == np.arange(len(labels)))
    mutual = mutual[mutual < nearest[mutual]]  # each pair once
    across = mutual[labels[mutual] != labels[nearest[mutual]]]
    counted = Counter(tuple(sorted((int(labels[i]), int(labels[nearest[i]])))) for i in across)
    return [(a, b, n) for (a, b), n in sorted(counted.items(), key=lambda item: (-item[1], item[0]))[:limit]]
