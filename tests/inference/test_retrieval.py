import numpy as np
import pytest

from inference.retrieval import retrieval_metrics


def unit(angles_degrees) -> np.ndarray:
    radians = np.radians(np.asarray(angles_degrees, dtype=np.float64))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


# Gallery on the unit circle: a query at angle q ranks gallery items by |angle - q|.
GALLERY_ANGLES = [0, 10, 20, 30, 100, 110, 200]
GALLERY_LABELS = np.array(["a", "b", "a", "a", "b", "b", "c"])


def test_hand_computed_top1_top5_and_map_at_r():
    # Query 1 ("a", at 1 deg): ranking 0(a) 10(b) 20(a) 30(a) ... R = 3, relevant at ranks 1, 3, 4.
    #   AP@R = (1/1 + 0 + 2/3) / 3 = 0.5556; top-1 right, top-5 right.
    # Query 2 ("b", at 104 deg): ranking 100(b) 110(b) 30 20 10(b) ... R = 3, relevant at 1, 2, 5.
    #   AP@R = (1 + 1 + 0) / 3 = 0.6667; top-1 right.
    # Query 3 ("c", at 9 deg): ranking 10(b) 0(a) 20 30 100 110 200(c): R = 1, nothing relevant at rank 1.
    #   AP@R = 0; top-1 wrong, top-5 wrong (c is 7th).
    # Query 4 ("a", at 95 deg): ranking 100(b) 110(b) 30(a) 20(a) 10(b) 0(a) ...: R = 3, relevant at 3, 4, 6.
    #   AP@R = (0 + 0 + 1/3) / 3 = 0.1111; top-1 wrong, top-5 right.
    metrics = retrieval_metrics(unit(GALLERY_ANGLES), GALLERY_LABELS, unit([1, 104, 9, 95]), np.array(["a", "b", "c", "a"]))
    assert metrics.top1 == pytest.approx(2 / 4)
    assert metrics.top5_items == pytest.approx(3 / 4)
    assert metrics.top5 == 1.0  # only three classes: each query's class ranks within the first five
    assert metrics.map_at_r == pytest.approx((5 / 9 + 2 / 3 + 0 + 1 / 9) / 4, abs=1e-6)
    assert (metrics.queries, metrics.gallery, metrics.classes, metrics.queries_without_class) == (4, 7, 3, 0)


def test_top5_ranks_classes_by_their_best_item_while_top5_items_counts_items():
    # Query at 0 deg, class "t". Class "w" has the five nearest items; "t" is next (at 30 deg), then five
    # other classes one item each (40..80 deg): items rank w w w w w t ..., classes rank w t o1 o2 ...
    angles = [1, 2, 3, 4, 5, 30, 40, 50, 60, 70, 80]
    labels = np.array(["w"] * 5 + ["t", "o1", "o2", "o3", "o4", "o5"])
    metrics = retrieval_metrics(unit(angles), labels, unit([0]), np.array(["t"]))
    assert (metrics.top1, metrics.top5_items, metrics.top5) == (0.0, 0.0, 1.0)
    # Move "t" behind the five other classes: it ranks 7th among the classes.
    angles[5] = 90
    metrics = retrieval_metrics(unit(angles), labels, unit([0]), np.array(["t"]))
    assert (metrics.top1, metrics.top5_items, metrics.top5) == (0.0, 0.0, 0.0)
    # Its best item counts, not its worst: a second "t" item near the query puts it second again.
    metrics = retrieval_metrics(unit(angles + [6]), np.append(labels, "t"), unit([0]), np.array(["t"]))
    assert metrics.top5 == 1.0


def test_a_perfect_ranking_scores_one_everywhere():
    gallery = unit([0, 5, 90, 95, 180])
    labels = np.array([1, 1, 2, 2, 3])
    metrics = retrieval_metrics(gallery, labels, unit([2, 92, 181]), np.array([1, 2, 3]))
    assert (metrics.top1, metrics.top5, metrics.top5_items, metrics.map_at_r) == (1.0, 1.0, 1.0, 1.0)


def test_map_at_r_rewards_the_whole_class_first_where_top1_does_not():
    # Both queries have their nearest item right; only the first has the whole class (R = 2) first.
    gallery = unit([0, 3, 6, 50])
    labels = np.array([7, 7, 8, 8])
    metrics = retrieval_metrics(gallery, labels, unit([1, 5]), np.array([7, 8]))
    # Query 2 ("8", at 5): ranking 6(8) 3(7) 0(7) 50(8): R = 2, AP@R = (1 + 0) / 2.
    assert metrics.top1 == 1.0
    assert metrics.map_at_r == pytest.approx((1.0 + 0.5) / 2)


def test_a_query_class_missing_from_the_gallery_is_a_miss_and_left_out_of_map():
    metrics = retrieval_metrics(unit([0, 90]), np.array([0, 1]), unit([1, 45]), np.array([0, 9]))
    assert metrics.top1 == 0.5 and metrics.top5 == 0.5 and metrics.top5_items == 0.5
    assert metrics.map_at_r == 1.0
    assert metrics.queries_without_class == 1


def test_chunking_does_not_change_the_figures():
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(60, 8)).astype(np.float32)
    queries = rng.normal(size=(25, 8)).astype(np.float32)
    gallery_labels, query_labels = rng.integers(0, 6, 60), rng.integers(0, 6, 25)
    whole = retrieval_metrics(gallery, gallery_labels, queries, query_labels)
    chunked = retrieval_metrics(gallery, gallery_labels, queries, query_labels, chunk=4)
    assert whole == chunked


def test_ties_keep_gallery_order():
    gallery = unit([0, 0, 0])
    metrics = retrieval_metrics(gallery, np.array([1, 2, 2]), unit([0]), np.array([2]))
    # Ranking 1, 2, 2 (gallery order): top-1 wrong; R = 2, relevant at ranks 2, 3 -> AP@R = (0 + 1/2) / 2.
    assert metrics.top1 == 0.0 and metrics.top5 == 1.0 and metrics.top5_items == 1.0
    assert metrics.map_at_r == pytest.approx(0.25)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="one d"):
        retrieval_metrics(np.zeros((3, 4)), [0, 1, 2], np.zeros((2, 5)), [0, 1])
    with pytest.raises(ValueError, match="one label"):
        retrieval_metrics(np.zeros((3, 4)), [0, 1], np.zeros((2, 4)), [0, 1])
    with pytest.raises(ValueError, match="empty"):
        retrieval_metrics(np.zeros((0, 4)), [], np.zeros((2, 4)), [0, 1])
