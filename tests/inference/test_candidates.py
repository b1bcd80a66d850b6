import pytest

from inference.candidates import Candidate, Neighbour, aggregate_neighbours, frame_confidence


def n(product_id: int, score: float, box_id: int = 0) -> Neighbour:
    return Neighbour(product_id=product_id, score=score, box_id=box_id)


def test_each_product_is_scored_by_its_best_neighbour():
    candidates = aggregate_neighbours([n(1, 0.5, 10), n(2, 0.7, 11), n(1, 0.9, 12), n(1, 0.4, 13)], top_k=5)
    assert [(c.product_id, c.score) for c in candidates] == [(1, 0.9), (2, 0.7)]
    first = candidates[0]
    assert first.components["knn"] == 0.9
    assert first.components["knn_mean"] == pytest.approx((0.5 + 0.9 + 0.4) / 3)
    assert first.components["knn_count"] == 3.0
    assert candidates[1].components == {"knn": 0.7, "knn_mean": pytest.approx(0.7), "knn_count": 1.0}


def test_best_first_whatever_the_neighbour_order():
    neighbours = [n(3, 0.2), n(1, 0.6), n(2, 0.95), n(4, 0.4), n(3, 0.8)]
    expected = [2, 3, 1, 4]
    assert [c.product_id for c in aggregate_neighbours(neighbours, top_k=10)] == expected
    assert [c.product_id for c in aggregate_neighbours(list(reversed(neighbours)), top_k=10)] == expected


def test_ties_are_broken_by_product_id_whatever_the_input_order():
    neighbours = [n(7, 0.8), n(3, 0.8), n(5, 0.8), n(9, 0.9)]
    assert [c.product_id for c in aggregate_neighbours(neighbours, top_k=10)] == [9, 3, 5, 7]
    assert [c.product_id for c in aggregate_neighbours(neighbours[::-1], top_k=10)] == [9, 3, 5, 7]


def test_truncates_to_top_k_after_ranking():
    neighbours = [n(pid, score) for pid, score in [(1, 0.1), (2, 0.5), (3, 0.9), (4, 0.7), (5, 0.3)]]
    assert [c.product_id for c in aggregate_neighbours(neighbours, top_k=2)] == [3, 4]
    assert [c.product_id for c in aggregate_neighbours(neighbours, top_k=1)] == [3]
    assert len(aggregate_neighbours(neighbours, top_k=50)) == 5


def test_the_mean_is_over_all_neighbours_of_the_product_even_beyond_top_k():
    neighbours = [n(1, 0.9), n(1, 0.3), n(2, 0.8), n(2, 0.8), n(2, 0.2)]
    (best,) = aggregate_neighbours(neighbours, top_k=1)
    assert best.product_id == 1
    assert best.components == {"knn": 0.9, "knn_mean": pytest.approx(0.6), "knn_count": 2.0}


def test_negative_scores_are_kept():
    candidates = aggregate_neighbours([n(1, -0.5), n(1, -0.2), n(2, -0.9)], top_k=5)
    assert [(c.product_id, c.score) for c in candidates] == [(1, -0.2), (2, -0.9)]
    assert candidates[0].components["knn_mean"] == pytest.approx(-0.35)


def test_no_neighbours_gives_no_candidates():
    assert aggregate_neighbours([], top_k=5) == []


def test_as_dict_copies_the_components():
    candidate = Candidate(product_id=4, score=0.5, components={"knn": 0.5})
    data = candidate.as_dict()
    assert data == {"product_id": 4, "score": 0.5, "components": {"knn": 0.5}}
    data["components"]["knn"] = 0.0
    assert candidate.components["knn"] == 0.5


def test_frame_confidence_is_the_mean_margin_over_boxes():
    sure = [Candidate(1, 0.9), Candidate(2, 0.3)]
    torn = [Candidate(1, 0.6), Candidate(2, 0.58)]
    alone = [Candidate(3, 0.7)]
    assert frame_confidence([sure, torn, alone, []]) == pytest.approx((0.6 + 0.02 + 0.7 + 0.0) / 4)
    assert frame_confidence([]) is None
