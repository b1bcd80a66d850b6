"""Label noise: planted label errors rank first; products and confusable pairs come out as built."""
import numpy as np
import pytest

from inference.label_noise import (
    NoiseConfig,
    confusable_pairs,
    nearest_neighbours,
    rank_products,
    score_label_noise,
)


def clusters(rng, products=6, per_product=40, dim=16, spread=0.35):
    centres = rng.normal(size=(products, dim))
    labels = np.repeat(np.arange(1, products + 1), per_product)
    vectors = centres[labels - 1] + spread * rng.normal(size=(len(labels), dim))
    return vectors, labels


def test_planted_label_errors_are_the_most_suspicious():
    rng = np.random.default_rng(0)
    vectors, labels = clusters(rng)
    planted = rng.choice(len(labels), 12, replace=False)
    noisy = labels.copy()
    noisy[planted] = (labels[planted] % 6) + 1  # each to another product
    scores = score_label_noise(vectors, noisy)
    top = np.argsort(-scores.suspicion)[: len(planted)]
    assert len(set(top) & set(planted)) / len(planted) >= 0.9
    # A planted crop's nearest differently-labelled neighbour is (mostly) its true product.
    assert np.mean(scores.nearest_other[planted] == labels[planted]) >= 0.9


def test_products_rank_by_their_share_of_suspicious_crops():
    rng = np.random.default_rng(1)
    vectors, labels = clusters(rng, products=3, per_product=30)
    noisy = labels.copy()
    noisy[np.flatnonzero(labels == 1)[:6]] = 3  # six crops of product 1 called product 3
    ranked = rank_products(noisy, score_label_noise(vectors, noisy), threshold=0.5)
    assert ranked[0].product_id == 3 and ranked[0].suspicious >= 5
    assert ranked[0].crops == 36 and ranked[0].share == pytest.approx(ranked[0].suspicious / 36)
    assert ranked[-1].suspicious == 0


def test_lookalike_products_are_confusable_pairs():
    rng = np.random.default_rng(2)
    vectors, labels = clusters(rng, products=4, per_product=30)
    vectors[labels == 2] = vectors[labels == 1][rng.permutation(30)] + 0.05 * rng.normal(size=(30, 16))
    pairs = confusable_pairs(labels, score_label_noise(vectors, labels))
    assert pairs[0][:2] == (1, 2) and pairs[0][2] >= 5
    assert all(n < pairs[0][2] for _, _, n in pairs[1:])


def test_nearest_neighbours_leave_each_crop_out_and_match_a_full_sort():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(50, 8))
    found = nearest_neighbours(vectors, k=5, block=7)  # blocks that do not divide 50
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    assert np.array_equal(found, np.argsort(-similarity, axis=1, kind="stable")[:, :5])


def test_tiny_inputs():
    one = score_label_noise(np.ones((1, 4)), np.array([7]))
    assert one.suspicion.tolist() == [0.0] and one.nearest_other.tolist() == [-1]
    two = score_label_noise(np.array([[1.0, 0], [0.9, 0.1]]), np.array([1, 2]), NoiseConfig(k=10))
    assert two.neighbours.shape == (2, 1) and (two.suspicion > 0.5).all()
