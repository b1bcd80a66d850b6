"""Planted label errors: how many of them rank at the top of the suspicion list (precision at k).

    .venv/bin/python benchmarks/label_noise_precision.py [DATASET] [--rate 0.02] [--seeds 0 1 2]

DATASET is a labelled COCO shelf dataset (default ``../shared/data/varol-shelves-dev``); its crops
are embedded by the default embedder once and cached under VAR_DIR/cache (the replay's cache). For
each seed a share ``--rate`` of the crops gets another product's label, drawn at random; k = the
number planted. Printed beside it: the same list ranked at random (the floor) and by the neighbour
disagreement alone and the centre confidence alone (what each signal buys).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def precision_at_k(order: np.ndarray, planted: np.ndarray) -> float:
    return len(set(order[: len(planted)].tolist()) & set(planted.tolist())) / len(planted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default=str(ROOT.parent / "shared" / "data" / "varol-shelves-dev"))
    parser.add_argument("--rate", type=float, default=0.02)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    import django

    django.setup()
    from django.conf import settings

    from annotator.replays import prepare_replay
    from inference.label_noise import score_label_noise

    prepared = prepare_replay(dataset=args.dataset, embedder=None, cache=settings.VAR_DIR / "cache")
    vectors = np.concatenate([prepared.vectors[f.frame_id] for f in prepared.frames])
    truth = np.concatenate([f.truth for f in prepared.frames])
    products = np.unique(truth)
    print(f"{len(truth):,} crops of {len(products)} products ({prepared.embedder_name}), "
          f"{args.rate:.0%} relabelled to another product per seed")
    print(f"{'seed':>4} {'planted':>7} {'suspicion':>9} {'neighbours':>10} {'centres':>8} {'random':>7}")
    results = []
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        planted = rng.choice(len(truth), max(1, int(args.rate * len(truth))), replace=False)
        noisy = truth.copy()
        for i in planted:
            noisy[i] = rng.choice(products[products != truth[i]])
        scores = score_label_noise(vectors, noisy)
        row = [precision_at_k(np.argsort(-scores.suspicion, kind="stable"), planted),
               precision_at_k(np.argsort(scores.agreement, kind="stable"), planted),
               precision_at_k(np.argsort(scores.centre_confidence, kind="stable"), planted),
               precision_at_k(rng.permutation(len(truth)), planted)]
        results.append(row)
        print(f"{seed:4d} {len(planted):7d} " + " ".join(f"{v:>{w}.3f}" for v, w in zip(row, (9, 10, 8, 7))),
              flush=True)
    mean = np.mean(results, axis=0)
    print(f"mean precision@k: suspicion {mean[0]:.3f}, neighbours alone {mean[1]:.3f}, centres alone {mean[2]:.3f}, "
          f"random {mean[3]:.3f}")


if __name__ == "__main__":
    main()
