"""Small statistics for rates read off few observations."""
from __future__ import annotations

import math


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion: (low, high) within [0, 1].

    ``successes`` of ``trials`` observed; ``z`` is the normal quantile of the confidence wanted
    (1.96: 95%). Unlike ``p +- z * sqrt(p(1-p)/n)`` it stays inside [0, 1] and does not collapse to
    a point at 0 or n successes, so 2 of 2 reads as (0.34, 1.0), not as certainly 1. No trials:
    (0.0, 1.0), nothing is known.
    """
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    low, high = centre - spread, centre + spread
    # Exact at the ends (rounding leaves 1e-17 outside otherwise).
    return (0.0 if successes == 0 else max(0.0, low)), (1.0 if successes == trials else min(1.0, high))
