"""Retrieval metrics of an embedder: labelled queries searched against a labelled gallery.

Similarity is the dot product (cosine for the embedders' unit rows); ties keep gallery order.
- top-1: the nearest gallery item has the query's label (1-NN classification).
- top-5: the query's class is among the 5 classes whose best gallery item is nearest, i.e. classes
  ranked by their best similarity, as the pipeline ranks product candidates (best score per product);
  ``baseline.md``'s top-5 is this one. ``top5_items``: one of the 5 nearest gallery items has the label
  (lower: near-duplicates of one wrong class fill the five places).
- mAP@R (Musgrave, Belongie, Lim, "A Metric Learning Reality Check", ECCV 2020): R is the number of
  gallery items of the query's class; AP@R = (1/R) * sum over i <= R of P@i * [item i is relevant],
  averaged over queries. It rewards ranking the whole class first, not only its nearest item.

A query whose class has no gallery item can never be right: it counts as a miss in top-k and is left
out of mAP@R (R = 0 leaves it undefined); ``queries_without_class`` says how many there were.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class RetrievalMetrics:
    top1: float
    top5: float
    top5_items: float
    map_at_r: float
    queries: int
    gallery: int
    classes: int  # classes among the queries
    queries_without_class: int

    def as_dict(self) -> dict:
        return asdict(self)


def retrieval_metrics(gallery: np.ndarray, gallery_labels: np.ndarray, queries: np.ndarray,
                      query_labels: np.ndarray, chunk: int = 256) -> RetrievalMetrics:
    """Top-1, top-5 and mAP@R of the queries (n, d) against the gallery (m, d), in query chunks of
    ``chunk`` rows (memory: chunk x m similarities)."""
    gallery = np.asarray(gallery, dtype=np.float32)
    queries = np.asarray(queries, dtype=np.float32)
    gallery_labels = np.asarray(gallery_labels)
    query_labels = np.asarray(query_labels)
    if gallery.ndim != 2 or queries.ndim != 2 or gallery.shape[1] != queries.shape[1]:
        raise ValueError(f"gallery {gallery.shape} and queries {queries.shape} must be (n, d) of one d")
    if len(gallery_labels) != len(gallery) or len(query_labels) != len(queries):
        raise ValueError("one label per gallery item and per query is needed")
    if len(gallery) == 0 or len(queries) == 0:
        raise ValueError("an empty gallery or query set has no retrieval metrics")

    classes, gallery_codes = np.unique(gallery_labels, return_inverse=True)
    class_sizes = np.bincount(gallery_codes, minlength=len(classes))
    position = np.searchsorted(classes, query_labels)
    known = (position < len(classes)) & (classes[np.minimum(position, len(classes) - 1)] == query_labels)
    r_all = np.where(known, class_sizes[np.minimum(position, len(classes) - 1)], 0)

    depth = max(5, int(r_all.max()))  # ranks that any metric looks at
    by_class = np.argsort(gallery_codes, kind="stable")
    class_starts = np.concatenate([[0], np.cumsum(class_sizes)[:-1]])
    query_codes = np.minimum(position, len(classes) - 1)
    hits1, hits5, class_hits5, ap = [], [], [], []
    for start in range(0, len(queries), chunk):
        similarity = queries[start : start + chunk] @ gallery.T
        labels = query_labels[start : start + chunk]
        r = r_all[start : start + chunk]
        order = np.argsort(-similarity, axis=1, kind="stable")[:, :depth]
        relevant = gallery_labels[order] == labels[:, None]
        hits1.append(relevant[:, 0])
        hits5.append(relevant[:, :5].any(axis=1))
        best_per_class = np.maximum.reduceat(similarity[:, by_class], class_starts, axis=1)
        own = np.take_along_axis(best_per_class, query_codes[start : start + chunk, None], axis=1)
        class_rank = (best_per_class > own).sum(axis=1)
        class_hits5.append((class_rank < 5) & known[start : start + chunk])
        ranks = np.arange(1, relevant.shape[1] + 1)
        within_r = ranks[None, :] <= r[:, None]
        precision = np.cumsum(relevant, axis=1) / ranks
        with np.errstate(invalid="ignore", divide="ignore"):
            ap.append(np.where(r > 0, (precision * relevant * within_r).sum(axis=1) / r, np.nan))
    ap_all = np.concatenate(ap)
    return RetrievalMetrics(
        top1=float(np.concatenate(hits1).mean()),
        top5=float(np.concatenate(class_hits5).mean()),
        top5_items=float(np.concatenate(hits5).mean()),
        map_at_r=float(np.nanmean(ap_all)) if np.any(r_all > 0) else 0.0,
        queries=len(queries),
        gallery=len(gallery),
        classes=len(np.unique(query_labels)),
        queries_without_class=int((r_all == 0).sum()),
    )
