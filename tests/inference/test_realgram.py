"""Realgram on small hand-computed cases, and the vectorised code against a plain loop."""
import math

import numpy as np
import pytest

from inference.boxes import iou_matrix
from inference.candidates import Candidate
from inference.realgram import (
    SECONDS_PER_DAY,
    RealgramConfig,
    ShelfHistory,
    apply_realgram,
    combined_counts,
    realgram_scores,
)

DAY = SECONDS_PER_DAY
NOW = 100 * DAY
LEFT, RIGHT = (0.0, 0.0, 0.2, 0.5), (0.8, 0.0, 0.2, 0.5)
EXACT = RealgramConfig(decay_per_day=0.1, overlap_margin=0.0, overlap_floor=0.0, overlap_power=1.0, weight=1.0)


def history(*rows):
    return ShelfHistory.from_rows(list(rows))


def test_max_count_rule_from_the_article():
    # Annotations [1, 2, 2, 3] and [2, 2, 3, 4] give 1, 2, 2, 3, 4.
    products = np.array([1, 2, 2, 3, 2, 2, 3, 4])
    frames = np.array([10, 10, 10, 10, 11, 11, 11, 11])
    assert combined_counts(products, frames) == {1: 1, 2: 2, 3: 1, 4: 1}
    products = np.array([2, 3, 3, 3, 3])
    frames = np.array([10, 10, 10, 11, 11])
    assert combined_counts(products, frames) == {2: 1, 3: 2}


def test_recency_wins_when_position_is_equal():
    shelf = history((7, LEFT, NOW - 1 * DAY, 1), (8, LEFT, NOW - 10 * DAY, 2))
    scores = realgram_scores(shelf, np.array([LEFT]), NOW, EXACT)
    assert scores.product_ids.tolist() == [7, 8]
    assert scores.score[0].tolist() == pytest.approx([math.exp(-0.1), math.exp(-1.0)])
    assert scores.recency[0].tolist() == pytest.approx([math.exp(-0.1), math.exp(-1.0)])


def test_overlap_wins_when_age_is_equal():
    shelf = history((7, LEFT, NOW - DAY, 1), (8, RIGHT, NOW - DAY, 1))
    scores = realgram_scores(shelf, np.array([RIGHT, LEFT]), NOW, EXACT)
    right_crop, left_crop = scores.score
    assert right_crop[1] > right_crop[0] == 0.0
    assert left_crop[0] > left_crop[1] == 0.0
    assert scores.spatial[0].tolist() == [0.0, 1.0]


def test_overlap_floor_and_half_overlap():
    config = RealgramConfig(decay_per_day=0.0, overlap_margin=0.0, overlap_floor=0.25, overlap_power=1.0, weight=2.0)
    half = (0.1, 0.0, 0.2, 0.5)  # overlaps LEFT on half of each: IoU = 0.05 / 0.15 = 1/3
    shelf = history((7, half, NOW - DAY, 1), (8, RIGHT, NOW - DAY, 1))
    scores = realgram_scores(shelf, np.array([LEFT]), NOW, config)
    assert scores.score[0].tolist() == pytest.approx([2.0 * (0.25 + 0.75 / 3), 2.0 * 0.25])


def test_a_product_takes_its_best_annotated_box():
    shelf = history((7, RIGHT, NOW - DAY, 1), (7, LEFT, NOW - 2 * DAY, 2), (7, LEFT, NOW - 9 * DAY, 3))
    scores = realgram_scores(shelf, np.array([LEFT]), NOW, EXACT)
    assert scores.score[0].tolist() == pytest.approx([math.exp(-0.2)])
    assert scores.spatial[0].tolist() == [1.0]


def test_only_the_past_inside_the_window_counts():
    config = RealgramConfig(window_days=5, decay_per_day=0.0, overlap_floor=1.0, weight=1.0)
    shelf = history((7, LEFT, NOW - 6 * DAY, 1), (8, LEFT, NOW + 1, 2), (9, LEFT, NOW, 3), (10, LEFT, NOW - 4 * DAY, 4))
    assert realgram_scores(shelf, np.array([LEFT]), NOW, config).product_ids.tolist() == [10]


def test_count_weight_adds_share_of_shelf():
    config = RealgramConfig(decay_per_day=0.0, overlap_floor=1.0, count_weight=1.0, weight=1.0)
    shelf = history((7, LEFT, NOW - DAY, 1), (7, LEFT, NOW - DAY, 1), (7, LEFT, NOW - DAY, 1), (8, RIGHT, NOW - DAY, 1))
    scores = realgram_scores(shelf, np.array([LEFT]), NOW, config)
    assert scores.count.tolist() == [3, 1]
    assert scores.score[0].tolist() == pytest.approx([1.75, 1.25])


def test_no_history_leaves_the_knn_candidates_unchanged():
    candidates = [[Candidate(1, 0.9, {"knn": 0.9}), Candidate(2, 0.8, {"knn": 0.8})], []]
    scores = realgram_scores(ShelfHistory.empty(), np.array([LEFT, RIGHT]), NOW, EXACT)
    assert apply_realgram(candidates, scores, top_k=5) == candidates


def test_realgram_reranks_and_adds_shelf_products_missing_from_knn():
    shelf = history((2, LEFT, NOW - DAY, 1), (3, LEFT, NOW - DAY, 1))
    scores = realgram_scores(shelf, np.array([LEFT]), NOW, RealgramConfig(decay_per_day=0.0, weight=0.2))
    knn = [[Candidate(1, 0.90, {"knn": 0.90}), Candidate(2, 0.85, {"knn": 0.85})]]
    ranked = apply_realgram(knn, scores, top_k=3)[0]
    assert [c.product_id for c in ranked] == [2, 1, 3]
    assert ranked[0].score == pytest.approx(1.05)
    assert ranked[0].components["knn"] == 0.85 and ranked[0].components["realgram"] == pytest.approx(0.2)
    assert "realgram" not in ranked[1].components
    assert ranked[2].components["knn"] == 0.0 and ranked[2].score == pytest.approx(0.2)
    assert knn[0][1].score == 0.85  # the input is not modified


def test_vectorised_scores_equal_a_plain_loop():
    rng = np.random.default_rng(0)
    entries = 60
    boxes = np.column_stack([rng.uniform(0, 0.8, entries), rng.uniform(0, 0.8, entries),
                             rng.uniform(0.05, 0.2, entries), rng.uniform(0.05, 0.2, entries)])
    shelf = ShelfHistory(rng.integers(1, 8, entries), boxes, NOW - rng.uniform(0, 20, entries) * DAY,
                         rng.integers(1, 5, entries))
    crops = np.column_stack([rng.uniform(0, 0.8, 9), rng.uniform(0, 0.8, 9),
                             rng.uniform(0.05, 0.2, 9), rng.uniform(0.05, 0.2, 9)])
    config = RealgramConfig(window_days=15, decay_per_day=0.07, overlap_margin=0.3, overlap_floor=0.1,
                            overlap_power=0.7, count_weight=0.5, weight=0.3)
    scores = realgram_scores(shelf, crops, NOW, config)

    recent = shelf.before(NOW, config.window_days)
    counts = combined_counts(recent.product_ids, recent.frame_ids)
    total = sum(counts.values())
    for b, crop in enumerate(crops):
        for p, product in enumerate(scores.product_ids):
            best = max(
                math.exp(-config.decay_per_day * (NOW - t) / DAY)
                * (config.overlap_floor + (1 - config.overlap_floor)
                   * iou_matrix(crop[None], box[None], config.overlap_margin)[0, 0] ** config.overlap_power)
                for pid, box, t in zip(recent.product_ids, recent.boxes, recent.annotated_at) if pid == product
            )
            expected = config.weight * (best + config.count_weight * counts[int(product)] / total)
            assert scores.score[b, p] == pytest.approx(expected)
            assert scores.recency[b, p] * scores.spatial[b, p] == pytest.approx(best)
