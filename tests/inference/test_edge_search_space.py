"""Qdrant Edge, the embedded engine: the same answers as the exact engine, through the same interface."""
from datetime import UTC, datetime

import numpy as np
import pytest

from inference.search_space import CropPoint, EdgeSearchSpace, ExactSearchSpace
from tests.inference.test_exact_search_space import DIM, fill_with_churn, neighbours, random_points

WHEN = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def edge(tmp_path):
    space = EdgeSearchSpace(tmp_path / "edge", "crops-test", DIM)
    yield space
    space.close()


@pytest.mark.parametrize("filters", [{"company_id": 1}, {"company_id": 2, "store_id": 3}, {"company_id": 1, "category_id": 2}])
@pytest.mark.parametrize("quantize", [False, True])
def test_edge_agrees_with_the_exact_engine(tmp_path, filters, quantize):
    edge = EdgeSearchSpace(tmp_path / "edge", "crops-test", DIM, quantize=quantize)
    rng = np.random.default_rng(1)
    exact = ExactSearchSpace(DIM)
    points = random_points(rng, 300)
    for space in (edge, exact):
        fill_with_churn(space, points)
    queries = rng.normal(size=(12, DIM)).astype(np.float32)
    assert neighbours(edge, queries, **filters) == neighbours(exact, queries, **filters)
    assert edge.count() == exact.count() and edge.count(company_id=1) == exact.count(company_id=1)
    edge.close()


def test_a_missing_shard_is_empty_and_searching_does_not_create_it(edge):
    assert edge.search(np.ones((2, DIM)), company_id=1) == [[], []]
    assert edge.count() == 0
    edge.delete([1])
    assert not edge.path.exists()
    assert edge.search(np.zeros((0, DIM)), company_id=1) == []


def test_points_survive_closing_and_recreate_empties(tmp_path):
    space = EdgeSearchSpace(tmp_path / "edge", "crops-test", DIM)
    space.upsert(random_points(np.random.default_rng(3), 50))
    space.flush()
    space.close()
    reopened = EdgeSearchSpace(tmp_path / "edge", "crops-test", DIM)
    assert reopened.count() == 50
    reopened.recreate()
    assert reopened.count() == 0
    reopened.close()


def test_an_indexed_shard_still_finds_each_stored_crop(tmp_path):
    """Past Qdrant's indexing threshold the search is HNSW, approximate: a stored crop is still
    its own nearest neighbour."""
    rng = np.random.default_rng(4)
    space = EdgeSearchSpace(tmp_path / "edge", "crops-big", 128)
    vectors = rng.normal(size=(30_000, 128)).astype(np.float32)
    space.upsert([CropPoint(i, v, i % 50, 1, 1, 1, 1, None, WHEN) for i, v in enumerate(vectors)])
    space.flush()
    assert space.indexed_count() == 30_000
    hits = space.search(vectors[:50], company_id=1, limit=3)
    assert [h[0].box_id for h in hits] == list(range(50))
    space.close()
