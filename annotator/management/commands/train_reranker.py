"""Train the second-level model (v3) from a replay and save it for RERANKER_MODEL.

The replay predicts every frame in time order with v2 (kNN + realgram + tracking) from what was
annotated before it; the candidates of the training frames become feature rows labelled with their
truth. Sources: a labelled COCO shelf dataset (training shelves only, so others stay held out), or
the company's own labelled frames (the retrain production runs, nightly say)."""
import re
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotator.coco import CocoError
from annotator.management.stage_configs import read_stage_config
from annotator.models import Company
from annotator.replays import company_replay, prepare_replay
from inference.pipeline import PipelineConfig
from inference.realgram import RealgramConfig
from inference.replay import collect_reranker_rows, run_replay
from inference.reranker import DEFAULT_BALANCE, fit_reranker
from inference.tracking import TrackingConfig


class Command(BaseCommand):
    help = ("Train the v3 reranker (LightGBM) on a replay of a COCO shelf dataset or of a company's labelled "
            "frames, and save it; with held-out shelves, print v1, v2 and v3 on them.")

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--dataset", help="COCO annotations json, or a folder holding annotations.json")
        source.add_argument("--company", help="the company's labelled frames (the production retrain)")
        parser.add_argument("--out", required=True, type=Path, help="model file to write (.json)")
        parser.add_argument("--train-shelves", help="regex of the shelves to train on (default: every other shelf "
                                                    "by name for a dataset, all shelves for a company)")
        parser.add_argument("--annotate-every", type=int, default=2, help="per camera, every N-th frame is annotated")
        parser.add_argument("--embedder", help="with --dataset: embedder checkpoint (default: ImageNet EfficientNet-Lite0)")
        parser.add_argument("--realgram-config", type=Path, help="JSON of realgram hyperparameters")
        parser.add_argument("--tracking-config", type=Path, help="JSON of tracking hyperparameters")
        parser.add_argument("--balance", type=float, default=DEFAULT_BALANCE,
                            help="weigh each box by count(its product) ** -balance: 0 favours plain accuracy (the "
                                 "majority class), 1 every product alike")

    def handle(self, *args, dataset, company, out, train_shelves, annotate_every, embedder, realgram_config,
               tracking_config, balance, **options):
        if annotate_every < 1:
            raise CommandError(f"--annotate-every must be at least 1, not {annotate_every}")
        config = PipelineConfig.named("v2", realgram=read_stage_config(RealgramConfig, realgram_config, "realgram"),
                                      tracking=read_stage_config(TrackingConfig, tracking_config, "tracking"))
        cache = settings.VAR_DIR / "cache"
        if dataset:
            try:
                prepared = prepare_replay(dataset=dataset, embedder=embedder, cache=cache)
            except CocoError as error:
                raise CommandError(str(error)) from None
            frames, vectors, dim = prepared.frames, prepared.vectors, prepared.dim
        else:
            try:
                owner = Company.objects.get(name=company)
            except Company.DoesNotExist:
                raise CommandError(f"--company: no company named {company!r}") from None
            frames, vectors, model = company_replay(company=owner, cache=cache)
            dim = model.dim
        shelves = sorted({frame.shelf for frame in frames})
        training = self.training_shelves(shelves, train_shelves, default_all=bool(company))
        if not training:
            raise CommandError(f"no shelves to train on among {len(shelves)} (--train-shelves {train_shelves!r})")
        held_out = set(shelves) - training
        self.stdout.write(f"training on {len(training)} shelves" +
                          (f", reporting on {len(held_out)} held-out shelves" if held_out else ""))
        rows = collect_reranker_rows(frames, lambda f: vectors[f.frame_id], config, dim=dim,
                                     train=lambda f: f.shelf in training, annotate_every=annotate_every)
        try:
            reranker = fit_reranker(rows, balance=balance)
        except ValueError as error:
            raise CommandError(str(error)) from None
        if held_out:
            configs = [PipelineConfig.named(name, realgram=config.realgram, tracking=config.tracking)
                       for name in ("v1", "v2", "v3")]
            scores = run_replay(frames, lambda f: vectors[f.frame_id], configs, dim=dim, annotate_every=annotate_every,
                                scored=lambda f: f.shelf in held_out, reranker=reranker)
            reranker.metrics["held_out"] = {s.pipeline: {"accuracy": s.accuracy, "macro_accuracy": s.macro_accuracy,
                                                         "accuracy_without_majority": s.accuracy_without_majority,
                                                         "flicker_rate": s.flicker_rate} for s in scores}
            self.stdout.write("held-out shelves:  accuracy  no-major  macro  flicker")
            for s in scores:
                self.stdout.write(f"  {s.pipeline:14s}  {s.accuracy:8.4f}  {s.accuracy_without_majority:8.4f}  "
                                  f"{s.macro_accuracy:5.3f}  {s.flicker_rate:7.3f}")
        reranker.save(out)
        self.stdout.write(self.style.SUCCESS(
            f"saved {out}: {reranker.metrics['rows']} rows from {reranker.metrics['frames']} frames; "
            f"set RERANKER_MODEL={out} and PIPELINE_VERSION=v3 to use it"))

    def training_shelves(self, shelves: list[str], pattern: str | None, *, default_all: bool) -> set[str]:
        if pattern:
            try:
                regex = re.compile(pattern)
            except re.error as error:
                raise CommandError(f"--train-shelves: bad regex {pattern!r} ({error})") from None
            return {shelf for shelf in shelves if regex.search(shelf)}
        return set(shelves) if default_all else set(shelves[::2])
