"""Box overlap and one-to-one matching."""
import numpy as np
import pytest

from inference.boxes import iou_matrix, match_boxes


def test_iou_of_identical_disjoint_and_half_overlapping_boxes():
    a = np.array([[0, 0, 10, 10]], np.float64)
    b = np.array([[0, 0, 10, 10], [20, 0, 10, 10], [5, 0, 10, 10]], np.float64)
    assert iou_matrix(a, b)[0] == pytest.approx([1.0, 0.0, 50 / 150])


def test_margin_grows_boxes_before_measuring():
    a = np.array([[0, 0, 10, 10]], np.float64)
    b = np.array([[12, 0, 10, 10]], np.float64)
    assert iou_matrix(a, b)[0, 0] == 0.0
    assert iou_matrix(a, b, margin=0.5)[0, 0] > 0.0


def test_match_boxes_is_one_to_one_by_best_iou():
    previous = np.array([[0, 0, 10, 10], [12, 0, 10, 10]], np.float64)
    current = np.array([[1, 0, 10, 10], [50, 0, 10, 10], [11, 0, 10, 10]], np.float64)
    assert match_boxes(previous, current) == [(0, 0), (1, 2)]
    assert match_boxes(previous, np.zeros((0, 4))) == []


def test_optimal_assignment_beats_taking_the_best_pair_first():
    # Greedy would pair a0-b0 (IoU 0.82) and leave a1 unmatched; the optimum matches both.
    a = np.array([[0, 0, 10, 10], [3, 0, 10, 10]], np.float64)
    b = np.array([[1, 0, 10, 10], [-2, 0, 10, 10]], np.float64)
    iou = iou_matrix(a, b)
    assert iou[0, 0] > iou[1, 0] and iou[0, 0] > iou[0, 1]
    assert iou[1, 1] < 0.5 <= iou[1, 0]
    assert match_boxes(a, b, min_iou=0.5) == [(0, 1), (1, 0)]


def test_pairs_under_the_threshold_never_match():
    a = np.array([[0, 0, 10, 10]], np.float64)
    b = np.array([[6, 0, 10, 10]], np.float64)
    assert match_boxes(a, b, min_iou=0.5) == []
    assert match_boxes(a, b, min_iou=0.2) == [(0, 0)]
