"""The Wilson score interval against published values and its edge cases."""
import pytest

from inference.stats import wilson_interval


def test_it_matches_the_textbook_values():
    # Newcombe (1998), table I: 81 of 263 -> 0.2553 .. 0.3662; 15 of 148 -> 0.0624 .. 0.1605.
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=1e-4)


def test_a_small_sample_is_wide_and_stays_inside_zero_to_one():
    low, high = wilson_interval(2, 2)
    assert high == 1.0 and low == pytest.approx(0.3424, abs=1e-4)
    assert wilson_interval(0, 3) == (0.0, pytest.approx(0.5615, abs=1e-4))
    big_low, big_high = wilson_interval(200, 200)
    assert big_low > 0.98 and big_high == 1.0  # more crops, narrower


def test_it_narrows_with_more_trials_around_the_same_rate():
    widths = [high - low for low, high in (wilson_interval(n // 4, n) for n in (4, 40, 400))]
    assert widths == sorted(widths, reverse=True) and widths[-1] < 0.1


def test_no_trials_says_nothing_is_known_and_bad_counts_are_refused():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    for successes, trials in ((3, 2), (-1, 2), (0, -1)):
        with pytest.raises(ValueError):
            wilson_interval(successes, trials)
