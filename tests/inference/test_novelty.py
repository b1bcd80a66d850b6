import numpy as np
import pytest

from inference.calibration import expected_calibration_error
from inference.novelty import (
    FEATURES,
    MISSING,
    NoveltyModel,
    fit_logistic,
    fit_novelty,
    held_out_products,
    neighbour_features,
)


def _column(name):
    return FEATURES.index(name)


def test_features_of_a_hand_made_frame():
    scores = np.array([
        [0.9, 0.8, 0.7, 0.6],     # products 1, 1, 2, 1: rival 2 at 0.7
        [0.5, 0.4, 0.0, 0.0],     # one product only, two slots missing
        [0.3, 0.9, 0.2, 0.1],     # unsorted: best is product 5 at 0.9
        [0.0, 0.0, 0.0, 0.0],     # no neighbours at all
    ])
    ids = np.array([
        [1, 1, 2, 1],
        [3, 3, MISSING, MISSING],
        [4, 5, 4, 4],
        [MISSING] * 4,
    ])
    features = neighbour_features(scores, ids, top_k=3)
    assert features[:, _column("top1")].tolist() == pytest.approx([0.9, 0.5, 0.9, 0.0])
    assert features[:, _column("margin")].tolist() == pytest.approx([0.2, 0.5, 0.6, 0.0])
    # agreement over the first 3 present neighbours, best first
    assert features[:, _column("agreement")].tolist() == pytest.approx([2 / 3, 1.0, 1 / 3, 0.0])
    assert features[:, _column("mean_top_k")].tolist() == pytest.approx([0.8, 0.45, (0.9 + 0.3 + 0.2) / 3, 0.0])
    assert features[:, _column("has_neighbours")].tolist() == [1, 1, 1, 0]


def _features_one_row(scores, ids, top_k):
    """A plain loop over one box, the reference the vectorised version must match."""
    pairs = sorted(((s, p) for s, p in zip(scores, ids) if p != MISSING), key=lambda pair: -pair[0])
    if not pairs:
        return [0.0, 0.0, 0.0, 0.0, 0.0]
    top1, top_product = pairs[0]
    rivals = [s for s, p in pairs if p != top_product]
    window = pairs[:top_k]
    return [top1, top1 - (rivals[0] if rivals else 0.0),
            sum(p == top_product for _, p in window) / len(window), sum(s for s, _ in window) / len(window), 1.0]


def test_vectorised_features_match_a_loop():
    rng = np.random.default_rng(3)
    scores = rng.uniform(-0.2, 1.0, (300, 8)).round(2)  # rounding makes ties, which must not matter
    ids = rng.integers(0, 4, (300, 8))
    ids[rng.uniform(size=ids.shape) < 0.2] = MISSING
    features = neighbour_features(scores, ids, top_k=5)
    for row in range(300):
        assert features[row] == pytest.approx(_features_one_row(scores[row], ids[row], 5)), row


def test_mismatched_arrays_are_refused():
    with pytest.raises(ValueError, match="same"):
        neighbour_features(np.zeros((3, 4)), np.zeros((3, 5), int))


def test_logistic_fit_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    x = rng.normal([1.0, -2.0], [0.5, 2.0], (40000, 2))
    truth_w, truth_b = np.array([2.0, -0.75]), 0.5
    y = rng.uniform(size=len(x)) < 1 / (1 + np.exp(-(x @ truth_w + truth_b)))
    weights, intercept, mean, scale = fit_logistic(x, y, l2=0.0)
    raw_weights = weights / scale
    raw_intercept = intercept - np.sum(weights * mean / scale)
    assert raw_weights == pytest.approx(truth_w, abs=0.08)
    assert raw_intercept == pytest.approx(truth_b, abs=0.1)


def _replay(seed, products=60, held_share=0.25, crops_per_product=6, dim=32, k=10, noise=0.6):
    """A synthetic replay: each product a random direction, its crops that direction plus noise; a share of
    products held out of the gallery; fresh crops of every product searched against it by brute force."""
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(products, dim))
    prototypes /= np.linalg.norm(prototypes, axis=1, keepdims=True)

    def crops(product_ids):
        vectors = prototypes[product_ids] + noise * rng.normal(size=(len(product_ids), dim)) / np.sqrt(dim)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    held = held_out_products(np.arange(products), held_share, seed)
    known = np.setdiff1d(np.arange(products), held)
    gallery_ids = np.repeat(known, crops_per_product)
    gallery = crops(gallery_ids)
    query_ids = np.repeat(np.arange(products), 4)
    similarities = crops(query_ids) @ gallery.T
    nearest = np.argsort(-similarities, axis=1)[:, :k]
    return (np.take_along_axis(similarities, nearest, axis=1), gallery_ids[nearest],
            ~np.isin(query_ids, held))


def test_fitted_on_one_replay_it_separates_another():
    model = fit_novelty(*_replay(1), top_k=5)
    scores, ids, in_gallery = _replay(2)
    probability = model.predict_proba(scores, ids)
    novel = ~in_gallery
    # AUC: the chance a held-out product's crop scores above a known one's
    assert np.mean(probability[novel][:, None] > probability[~novel][None, :]) > 0.95
    assert 0.2 < model.novel_share < 0.3 and model.samples == 240


def test_where_known_and_new_overlap_its_probabilities_are_calibrated_on_another_replay():
    # Noisy crops: the neighbourhoods of held-out and known products overlap, so the fit must be graded.
    model = fit_novelty(*_replay(1, products=200, noise=1.2), top_k=5)
    scores, ids, in_gallery = _replay(2, products=200, noise=1.2)
    probability = model.predict_proba(scores, ids)
    novel = ~in_gallery
    assert 0.75 < np.mean(probability[novel][:, None] > probability[~novel][None, :]) < 0.95
    assert expected_calibration_error(probability, novel) < 0.05
    assert probability.mean() == pytest.approx(novel.mean(), abs=0.03)
    # the raw distance is no probability: 1 - top1 is far off on the same boxes
    assert expected_calibration_error(np.clip(1 - scores[:, 0], 0, 1), novel) > 0.1


def test_a_close_agreeing_neighbourhood_is_less_novel_than_a_far_mixed_one():
    model = fit_novelty(*_replay(1), top_k=5)
    scores = np.array([[0.95, 0.94, 0.93, 0.5, 0.4], [0.45, 0.44, 0.43, 0.42, 0.41]])
    ids = np.array([[7, 7, 7, 8, 9], [1, 2, 3, 4, 5]])
    familiar, strange = model.predict_proba(scores, ids)
    assert familiar < 0.2 < 0.8 < strange


def test_fitting_needs_both_kinds_of_query():
    scores, ids, in_gallery = _replay(1)
    with pytest.raises(ValueError, match="both"):
        fit_novelty(scores, ids, np.ones_like(in_gallery))
    with pytest.raises(ValueError, match="gallery flags"):
        fit_novelty(scores, ids, in_gallery[:-1])


def test_held_out_products_are_reproducible_and_at_least_one():
    assert held_out_products(np.array([5, 5, 9, 2]), 0.01).tolist() in ([2], [5], [9])
    assert held_out_products(np.arange(100), 0.2, seed=4).tolist() == held_out_products(np.arange(100), 0.2, seed=4).tolist()
    assert len(held_out_products(np.arange(100), 0.2)) == 20


def test_a_model_round_trips_and_refuses_other_files(tmp_path):
    model = fit_novelty(*_replay(1), top_k=5)
    loaded = NoveltyModel.load(model.save(tmp_path / "novelty.json"))
    scores, ids, _ = _replay(2)
    assert np.array_equal(loaded.predict_proba(scores, ids), model.predict_proba(scores, ids))
    assert loaded.top_k == 5
    (tmp_path / "other.json").write_text('{"format": "shelf-annotator/calibrator-isotonic/1"}')
    with pytest.raises(ValueError, match="other.json: not a novelty model"):
        NoveltyModel.load(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json: not a novelty model"):
        NoveltyModel.load(tmp_path / "broken.json")
