from datetime import datetime, timezone

import numpy as np
import pytest

from inference.search_space import CropPoint, QdrantSearchSpace, collection_name, connect_qdrant

DIM = 4
WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)


def point(box_id: int, vector, *, product_id: int = 1, company_id: int = 1, store_id: int = 1,
          category_id: int | None = None, frame_id: int = 1, shelf_id: int = 1) -> CropPoint:
    return CropPoint(box_id=box_id, vector=np.asarray(vector, dtype=np.float32), product_id=product_id,
                     frame_id=frame_id, company_id=company_id, store_id=store_id, shelf_id=shelf_id,
                     category_id=category_id, annotated_at=WHEN)


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture(params=["memory", "disk"])
def location(request, tmp_path):
    return ":memory:" if request.param == "memory" else tmp_path / "qdrant"


@pytest.fixture
def client(location):
    client = connect_qdrant(path=location)
    yield client
    client.close()


@pytest.fixture
def space(client) -> QdrantSearchSpace:
    return QdrantSearchSpace(client, collection_name("test-embedder"), DIM)


def box_ids(neighbours) -> list[int]:
    return [neighbour.box_id for neighbour in neighbours]


def test_ensure_collection_is_idempotent_and_keeps_points(space, client):
    assert not client.collection_exists(space.collection)
    space.ensure_collection()
    assert client.collection_exists(space.collection)
    space.upsert([point(1, unit(1, 0, 0, 0))])
    space.ensure_collection()
    space.ensure_collection()
    assert space.count() == 1
    assert client.get_collection(space.collection).config.params.vectors.size == DIM


def test_recreate_empties_the_collection(space):
    space.upsert([point(1, unit(1, 0, 0, 0)), point(2, unit(0, 1, 0, 0))])
    space.recreate()
    assert space.count() == 0
    space.recreate()  # also fine when it exists and is empty
    assert space.count() == 0


def test_upsert_by_box_id_replaces_the_point(space):
    space.upsert([point(7, unit(1, 0, 0, 0), product_id=10)])
    space.upsert([point(7, unit(0, 1, 0, 0), product_id=20)])
    assert space.count() == 1
    (neighbours,) = space.search(np.array([unit(0, 1, 0, 0)]), company_id=1)
    assert [(nb.box_id, nb.product_id) for nb in neighbours] == [(7, 20)]
    assert neighbours[0].score == pytest.approx(1.0, abs=1e-5)
    (stored,) = space.client.retrieve(space.collection, [7], with_payload=True)
    assert stored.payload == {"product_id": 20, "box_id": 7, "frame_id": 1, "company_id": 1, "store_id": 1,
                              "shelf_id": 1, "category_id": None, "annotated_at": WHEN.isoformat()}


def test_upsert_in_batches_stores_every_point(space):
    rng = np.random.default_rng(0)
    space.upsert([point(i, rng.normal(size=DIM)) for i in range(1, 12)], batch_size=4)
    assert space.count() == 11


def test_delete_by_box_ids(space):
    space.upsert([point(i, unit(1, i, 0, 0)) for i in (1, 2, 3, 4)])
    space.delete([2, 4])
    assert space.count() == 2
    (neighbours,) = space.search(np.array([unit(1, 2, 0, 0)]), company_id=1)
    assert sorted(box_ids(neighbours)) == [1, 3]
    space.delete([])
    space.delete([99])  # unknown ids are no error
    assert space.count() == 2


def test_delete_on_a_missing_collection_is_a_no_op(space, client):
    space.delete([1, 2])
    assert not client.collection_exists(space.collection)


def test_search_is_always_filtered_by_company(space):
    query = unit(0, 1, 0, 0)
    space.upsert([
        point(1, unit(1, 0, 0, 0), product_id=11, company_id=1),
        point(2, unit(1, 1, 1, 0), product_id=12, company_id=1),
        point(3, query, product_id=99, company_id=2),  # the exact match, of another company
    ])
    (neighbours,) = space.search(np.array([query]), company_id=1, limit=10)
    assert box_ids(neighbours) == [2, 1]
    assert 99 not in {nb.product_id for nb in neighbours}
    (theirs,) = space.search(np.array([query]), company_id=2, limit=10)
    assert box_ids(theirs) == [3]
    assert space.search(np.array([query]), company_id=3) == [[]]


def test_store_and_category_filters(space):
    vector = unit(1, 1, 0, 0)
    space.upsert([
        point(1, vector, store_id=1, category_id=5),
        point(2, vector, store_id=2, category_id=5),
        point(3, vector, store_id=1, category_id=6),
        point(4, vector, store_id=2, category_id=None),
        point(5, vector, company_id=2, store_id=1, category_id=5),
    ])
    query = np.array([vector])
    assert sorted(box_ids(space.search(query, company_id=1)[0])) == [1, 2, 3, 4]
    assert sorted(box_ids(space.search(query, company_id=1, store_id=1)[0])) == [1, 3]
    assert sorted(box_ids(space.search(query, company_id=1, category_id=5)[0])) == [1, 2]
    assert box_ids(space.search(query, company_id=1, store_id=2, category_id=5)[0]) == [2]
    assert space.search(query, company_id=1, store_id=3)[0] == []


def test_nearest_neighbour_of_a_stored_vector_is_itself(space):
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(20, DIM)).astype(np.float32)
    space.upsert([point(100 + i, v * (i + 1), product_id=i) for i, v in enumerate(vectors)])  # scale is irrelevant
    results = space.search(vectors, company_id=1, limit=3)
    assert len(results) == 20
    for i, neighbours in enumerate(results):
        assert len(neighbours) == 3
        assert (neighbours[0].box_id, neighbours[0].product_id) == (100 + i, i)
        assert neighbours[0].score == pytest.approx(1.0, abs=1e-5)
        scores = [nb.score for nb in neighbours]
        assert scores == sorted(scores, reverse=True)


def test_batch_search_returns_one_list_per_query_in_order(space):
    space.upsert([point(1, unit(1, 0, 0, 0), product_id=1), point(2, unit(0, 1, 0, 0), product_id=2),
                  point(3, unit(0, 0, 1, 0), product_id=3)])
    queries = np.array([unit(0, 0, 1, 0.1), unit(1, 0, 0, 0.1), unit(0, 1, 0, 0.1), unit(0, 0, 1, 0.2)])
    results = space.search(queries, company_id=1, limit=1)
    assert [box_ids(r) for r in results] == [[3], [1], [2], [3]]


def test_limit_caps_the_neighbours(space):
    space.upsert([point(i, unit(1, i, 0, 0)) for i in range(1, 9)])
    (neighbours,) = space.search(np.array([unit(1, 1, 0, 0)]), company_id=1, limit=5)
    assert len(neighbours) == 5
    assert neighbours[0].box_id == 1


def test_missing_collection_gives_empty_lists(space, client):
    assert space.search(np.zeros((3, DIM), dtype=np.float32) + 1, company_id=1) == [[], [], []]
    assert space.count() == 0
    assert space.count(company_id=1) == 0
    assert not client.collection_exists(space.collection)  # searching does not create it


def test_empty_collection_gives_empty_lists(space):
    space.ensure_collection()
    assert space.search(np.ones((2, DIM), dtype=np.float32), company_id=1) == [[], []]


def test_no_query_vectors_gives_no_lists(space):
    space.upsert([point(1, unit(1, 0, 0, 0))])
    assert space.search(np.zeros((0, DIM), dtype=np.float32), company_id=1) == []


def test_count_by_company(space):
    space.upsert([point(1, unit(1, 0, 0, 0), company_id=1), point(2, unit(0, 1, 0, 0), company_id=1),
                  point(3, unit(0, 0, 1, 0), company_id=2)])
    assert space.count() == 3
    assert space.count(company_id=1) == 2
    assert space.count(company_id=2) == 1
    assert space.count(company_id=3) == 0


def test_collections_of_different_embedders_are_separate(client):
    a = QdrantSearchSpace(client, collection_name("embedder-a"), DIM)
    b = QdrantSearchSpace(client, collection_name("embedder-b"), 3)
    a.upsert([point(1, unit(1, 0, 0, 0))])
    b.upsert([point(1, unit(1, 0, 0)), point(2, unit(0, 1, 0))])
    assert (a.count(), b.count()) == (1, 2)


def test_on_disk_points_survive_reopening(tmp_path):
    path = tmp_path / "qdrant"
    client = connect_qdrant(path=path)
    space = QdrantSearchSpace(client, collection_name("persisted"), DIM)
    space.upsert([point(1, unit(1, 0, 0, 0), product_id=5), point(2, unit(0, 1, 0, 0), product_id=6, company_id=2)])
    client.close()

    client = connect_qdrant(path=path)
    try:
        space = QdrantSearchSpace(client, collection_name("persisted"), DIM)
        assert space.count() == 2
        assert space.count(company_id=2) == 1
        (neighbours,) = space.search(np.array([unit(1, 0, 0, 0)]), company_id=1)
        assert [(nb.box_id, nb.product_id) for nb in neighbours] == [(1, 5)]
        assert neighbours[0].score == pytest.approx(1.0, abs=1e-5)
    finally:
        client.close()


def test_connect_qdrant_creates_the_directory(tmp_path):
    path = tmp_path / "deep" / "qdrant"
    client = connect_qdrant(path=path)
    try:
        assert path.is_dir()
    finally:
        client.close()


@pytest.mark.parametrize("name, expected", [
    ("efficientnet-lite0-imagenet", "crops-efficientnet-lite0-imagenet"),
    ("shelf_v2", "crops-shelf_v2"),
    ("my model/v1.2", "crops-my-model-v1-2"),
    ("  --weird**name--  ", "crops-weird-name"),
    ("ünïcode:ok", "crops-n-code-ok"),
])
def test_collection_name_sanitises(name, expected):
    assert collection_name(name) == expected


def test_collection_names_are_usable(client):
    space = QdrantSearchSpace(client, collection_name("my model/v1.2 (fine-tuned)"), DIM)
    space.upsert([point(1, unit(1, 0, 0, 0))])
    assert space.count() == 1
