"""Box geometry shared by the stages: overlap of every box with every other, and one-to-one matching.

Boxes are rows of x, y, w, h (top-left corner, any unit as long as both sides use the same one).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_matrix(a: np.ndarray, b: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), each box first grown by
    ``margin`` x its size on every side (0: the boxes as they are). Returns (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)

    def corners(boxes: np.ndarray) -> tuple[np.ndarray, ...]:
        x, y, w, h = boxes.T
        return x - margin * w, y - margin * h, x + (1 + margin) * w, y + (1 + margin) * h

    ax0, ay0, ax1, ay1 = (c[:, None] for c in corners(a))
    bx0, by0, bx1, by1 = (c[None, :] for c in corners(b))
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * np.clip(
        np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_boxes(a: np.ndarray, b: np.ndarray, min_iou: float = 0.5) -> list[tuple[int, int]]:
    """One-to-one pairs (index in ``a``, index in ``b``) that maximise the total IoU (optimal
    assignment), keeping only pairs overlapping at least ``min_iou``. Sorted by the index in ``a``."""
    iou = iou_matrix(a, b)
    if iou.size == 0:
        return []
    # Pairs under the threshold weigh nothing, so two weak pairs never outbid one strong pair.
    rows, columns = linear_sum_assignment(np.where(iou >= min_iou, iou, 0.0), maximize=True)
    keep = iou[rows, columns] >= min_iou
    return [(int(i), int(j)) for i, j in zip(rows[keep], columns[keep])]
