"""Tune realgram on some shelves with Optuna, report on the others, and save the configuration."""
import json
import re
from dataclasses import asdict
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotator.coco import CocoError
from annotator.replays import prepare_replay
from inference.realgram_tuning import OBJECTIVES, tune_realgram


class Command(BaseCommand):
    help = ("Search realgram's hyperparameters on a replay of a COCO shelf dataset (tuning shelves), report "
            "v0 vs v1 on held-out shelves, and save the best configuration as JSON (REALGRAM_CONFIG loads it).")

    def add_arguments(self, parser):
        parser.add_argument("dataset")
        parser.add_argument("--trials", type=int, default=50)
        parser.add_argument("--out", type=Path, default=Path("var/realgram.json"))
        parser.add_argument("--tune-shelves", help="regex of the shelves to tune on (default: every other shelf by name)")
        parser.add_argument("--objective", choices=OBJECTIVES, default="accuracy")
        parser.add_argument("--annotate-every", type=int, default=2)
        parser.add_argument("--embedder")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, dataset, trials, out, tune_shelves, objective, annotate_every, embedder, seed, **options):
        if trials < 1:
            raise CommandError(f"--trials must be at least 1, not {trials}")
        try:
            prepared = prepare_replay(dataset=dataset, embedder=embedder, cache=settings.VAR_DIR / "cache")
        except CocoError as error:
            raise CommandError(str(error)) from None
        shelves = sorted({frame.shelf for frame in prepared.frames})
        if tune_shelves:
            try:
                pattern = re.compile(tune_shelves)
            except re.error as error:
                raise CommandError(f"--tune-shelves: bad regex {tune_shelves!r} ({error})") from None
            tuning = {shelf for shelf in shelves if pattern.search(shelf)}
        else:
            tuning = set(shelves[::2])
        held_out = set(shelves) - tuning
        if not tuning or not held_out:
            raise CommandError(f"{dataset}: need shelves to tune on and others to report on; got "
                               f"{len(tuning)} tuning and {len(held_out)} held-out of {len(shelves)}")
        self.stdout.write(f"tuning on {len(tuning)} shelves, reporting on {len(held_out)} held-out shelves")
        result = tune_realgram(
            prepared.frames, prepared.vectors_of(), dim=prepared.dim,
            tune=lambda f: f.shelf in tuning, report=lambda f: f.shelf in held_out,
            trials=trials, annotate_every=annotate_every, objective=objective, seed=seed,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(result.best), indent=2))
        self.stdout.write(f"best {objective} on tuning shelves: {result.tune_score:.4f} after {trials} trials")
        self.stdout.write("best parameters: " + ", ".join(f"{k}={v:.4g}" for k, v in asdict(result.best).items()))
        self.stdout.write("held-out shelves:      accuracy  no-major  macro  flicker")
        for label, score in (("v0", result.report_v0), ("v1 default", result.report_default_v1),
                             ("v1 tuned", result.report_v1)):
            self.stdout.write(f"  {label:18s}  {score.accuracy:8.4f}  {score.accuracy_without_majority:8.4f}  "
                              f"{score.macro_accuracy:5.3f}  {score.flicker_rate:7.3f}")
        self.stdout.write(self.style.SUCCESS(f"saved {out}; set REALGRAM_CONFIG={out} to use it"))
