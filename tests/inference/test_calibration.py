import numpy as np
import pytest

from inference.calibration import Calibrator, cross_fitted_error, expected_calibration_error, fit_isotonic


def test_isotonic_fit_is_monotone_and_matches_the_observed_rate():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, 5000)
    correct = rng.uniform(0, 1, 5000) < scores  # a score of s is right with probability s
    calibrator = fit_isotonic(scores, correct)
    grid = np.linspace(0, 1, 101)
    probabilities = calibrator.probability(grid)
    assert np.all(np.diff(probabilities) >= -1e-12)
    assert probabilities[90] == pytest.approx(0.9, abs=0.06)
    assert expected_calibration_error(calibrator.probability(scores), correct) < 0.03
    assert cross_fitted_error(scores, correct, np.arange(5000) // 50) < 0.05


def test_violators_are_pooled():
    calibrator = fit_isotonic([0.1, 0.2, 0.3, 0.4], [1, 0, 0, 1])
    assert calibrator.probability([0.1, 0.2, 0.3]).tolist() == pytest.approx([1 / 3] * 3)
    assert calibrator.probability(0.4) == pytest.approx(1.0)


def test_a_calibrator_round_trips_and_refuses_other_files(tmp_path):
    calibrator = fit_isotonic([0.2, 0.8], [0, 1])
    loaded = Calibrator.load(calibrator.save(tmp_path / "c.json"))
    assert loaded.probability(0.8) == calibrator.probability(0.8)
    (tmp_path / "other.json").write_text('{"format": "x"}')
    with pytest.raises(ValueError, match="other.json: not a calibrator"):
        Calibrator.load(tmp_path / "other.json")
