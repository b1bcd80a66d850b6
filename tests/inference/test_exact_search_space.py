"""The exact numpy engine answers as Qdrant does, through the same interface."""
from datetime import UTC, datetime

import numpy as np
import pytest

from inference.search_space import CropPoint, ExactSearchSpace, QdrantSearchSpace, connect_qdrant

DIM = 16


def random_points(rng, count, start=0):
    vectors = rng.normal(size=(count, DIM)).astype(np.float32)
    return [
        CropPoint(box_id=start + i, vector=vectors[i], product_id=int(rng.integers(1, 20)), frame_id=1,
                  company_id=int(rng.integers(1, 3)), store_id=int(rng.integers(1, 4)), shelf_id=1,
                  category_id=int(rng.integers(1, 3)) if i % 5 else None, annotated_at=datetime(2024, 1, 1, tzinfo=UTC))
        for i in range(count)
    ]


def fill_with_churn(space, points):
    """Upserts in two batches, replaced points and deletions: what an engine must survive."""
    space.upsert(points[:200])
    space.upsert(points[200:])
    space.upsert(random_points(np.random.default_rng(2), 40, start=100))  # replaces ids 100..139
    space.delete(list(range(0, 300, 7)))


@pytest.fixture
def both():
    exact = ExactSearchSpace(DIM, capacity=8)  # small capacity: growth is exercised
    qdrant = QdrantSearchSpace(connect_qdrant(path=":memory:"), "crops-agree", DIM)
    return exact, qdrant


def neighbours(space, queries, **filters):
    return [[(n.box_id, n.product_id, round(n.score, 4)) for n in hits]
            for hits in space.search(queries, limit=7, **filters)]


# Broad filters score every row in place, narrow ones (under 1/8 of the rows) copy theirs out first.
@pytest.mark.parametrize("filters", [{"company_id": 1}, {"company_id": 2, "store_id": 3}, {"company_id": 1, "category_id": 2},
                                     {"company_id": 2, "store_id": 3, "category_id": 1}])
def test_exact_engine_agrees_with_qdrant(both, filters):
    rng = np.random.default_rng(1)
    exact, qdrant = both
    points = random_points(rng, 300)
    for space in both:
        fill_with_churn(space, points)
    queries = rng.normal(size=(12, DIM)).astype(np.float32)
    assert neighbours(exact, queries, **filters) == neighbours(qdrant, queries, **filters)
    assert exact.count() == qdrant.count() and exact.count(company_id=1) == qdrant.count(company_id=1)


def test_exact_engine_basics():
    space = ExactSearchSpace(3)
    assert space.search(np.ones((2, 3)), company_id=1) == [[], []]
    when = datetime(2024, 1, 1, tzinfo=UTC)
    space.upsert([CropPoint(1, np.array([1.0, 0, 0]), 5, 1, 1, 1, 1, None, when),
                  CropPoint(2, np.array([0.0, 2.0, 0]), 6, 1, 2, 1, 1, None, when)])
    [[hit]] = space.search(np.array([[3.0, 0.1, 0]]), company_id=1)
    assert (hit.box_id, hit.product_id) == (1, 5) and hit.score == pytest.approx(0.99944, abs=1e-4)
    assert space.search(np.array([[1.0, 0, 0]]), company_id=1, category_id=4) == [[]]
    space.upsert([CropPoint(1, np.array([1.0, 0, 0]), 9, 1, 1, 1, 1, None, when)])
    assert space.search(np.array([[1.0, 0, 0]]), company_id=1)[0][0].product_id == 9
    assert space.count() == 2
    space.recreate()
    assert space.count() == 0
