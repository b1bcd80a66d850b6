"""Realgram cost per frame: the vectorised implementation against a plain per-box Python loop.

    .venv/bin/python benchmarks/realgram_cost.py [--boxes 40] [--history 400] [--repeat 20]

Both are measured in the same run on the same inputs (and checked to agree); the ratio is the figure
to read, since absolute times on a shared 2-core machine are noisy.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.realgram import SECONDS_PER_DAY, RealgramConfig, ShelfHistory, combined_counts, realgram_scores  # noqa: E402


def naive_scores(history: ShelfHistory, crops: np.ndarray, moment: float, config: RealgramConfig) -> dict:
    """The same definition, one crop and one annotated box at a time."""
    recent = history.before(moment, config.window_days)
    counts = combined_counts(recent.product_ids, recent.frame_ids)
    total = sum(counts.values())
    result = {}
    for b, (cx, cy, cw, ch) in enumerate(crops):
        m = config.overlap_margin
        a = (cx - m * cw, cy - m * ch, cx + (1 + m) * cw, cy + (1 + m) * ch)
        for product, (x, y, w, h), taken in zip(recent.product_ids, recent.boxes, recent.annotated_at):
            o = (x - m * w, y - m * h, x + (1 + m) * w, y + (1 + m) * h)
            inter = max(0.0, min(a[2], o[2]) - max(a[0], o[0])) * max(0.0, min(a[3], o[3]) - max(a[1], o[1]))
            union = (a[2] - a[0]) * (a[3] - a[1]) + (o[2] - o[0]) * (o[3] - o[1]) - inter
            iou = inter / union if union > 0 else 0.0
            spatial = config.overlap_floor + (1 - config.overlap_floor) * iou ** config.overlap_power
            value = math.exp(-config.decay_per_day * (moment - taken) / SECONDS_PER_DAY) * spatial
            key = (b, int(product))
            result[key] = max(result.get(key, 0.0), value)
    return {k: config.weight * (v + config.count_weight * counts[k[1]] / total) for k, v in result.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=40, help="boxes in the frame")
    parser.add_argument("--history", type=int, default=400, help="annotated boxes of the shelf in the window")
    parser.add_argument("--products", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    now = 60 * SECONDS_PER_DAY

    def boxes(n: int) -> np.ndarray:
        return np.column_stack([rng.uniform(0, 0.9, n), rng.uniform(0, 0.9, n), rng.uniform(0.03, 0.1, n),
                                rng.uniform(0.1, 0.3, n)])

    history = ShelfHistory(rng.integers(0, args.products, args.history), boxes(args.history),
                           now - rng.uniform(0, 30, args.history) * SECONDS_PER_DAY,
                           rng.integers(0, 10, args.history))
    crops = boxes(args.boxes)
    config = RealgramConfig(count_weight=0.2)

    vectorised = realgram_scores(history, crops, now, config)
    naive = naive_scores(history, crops, now, config)
    for (b, product), value in naive.items():
        column = int(np.flatnonzero(vectorised.product_ids == product)[0])
        assert math.isclose(vectorised.score[b, column], value, rel_tol=1e-9), (b, product)

    def timed(function) -> float:
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            function()
            best = min(best, time.perf_counter() - start)
        return best

    fast = timed(lambda: realgram_scores(history, crops, now, config))
    slow = timed(lambda: naive_scores(history, crops, now, config))
    print(f"realgram per frame: {args.boxes} boxes x {args.history} annotated boxes ({args.products} products)")
    print(f"  vectorised (numpy)   {fast * 1e3:8.2f} ms")
    print(f"  per-box Python loop  {slow * 1e3:8.2f} ms")
    print(f"  speed-up             {slow / fast:8.1f}x  (best of {args.repeat}, same run, results equal)")


if __name__ == "__main__":
    main()
