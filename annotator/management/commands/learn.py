"""One round of the learning loop: train a candidate model set on a company's labels, gate it
against the promoted set on the labels after the cut-off, and promote it (re-index, then switch)
only if it wins. The last line printed is the model set's folder.

``--dataset`` runs the same round on a labelled COCO dataset instead, with held-out shelves as the
gate (how the README's figures are made); nothing is promoted then."""
import shlex
import sys
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from annotator.coco import CocoError
from annotator.management.options import regex_option
from annotator.models import Company
from annotator.replays import coco_replay_frames
from annotator.services import learning
from inference.learning import LearningConfig, RoundData, run_round


class Command(BaseCommand):
    help = ("Train, gate and (if it wins) promote a company's model set: embedder, realgram, tracking, reranker, "
            "calibrator. Prints the model set's folder last.")

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--company", help="the company whose labels train its model set")
        source.add_argument("--dataset", type=Path, help="a labelled COCO dataset (evaluation: nothing is promoted)")
        parser.add_argument("--until", help="cut-off (ISO time): train on labels of frames before it, gate on the "
                                            "rest (default: the last fifth of the labelled frames gate)")
        parser.add_argument("--gate-shelves", help="regex: gate on these shelves instead of a time split")
        parser.add_argument("--budget-minutes", type=float, default=settings.LEARN_BUDGET_MINUTES,
                            help="the round's time box (training takes three quarters of it)")
        parser.add_argument("--margin", type=float, default=settings.LEARN_PROMOTION_MARGIN,
                            help="accuracy the candidate must gain over the promoted set")
        parser.add_argument("--max-steps", type=int, help="stop training after this many steps")
        parser.add_argument("--out", type=Path, help="with --dataset: the model set folder to write")

    def handle(self, *args, company, dataset, until, gate_shelves, budget_minutes, margin, max_steps, out, **options):
        if budget_minutes <= 0:
            raise CommandError(f"--budget-minutes must be positive, not {budget_minutes}")
        cut_off = self.cut_off(until)
        shelves = regex_option(gate_shelves, "--gate-shelves")
        try:
            config = learning.learning_config(budget_minutes=budget_minutes, margin=margin, max_steps=max_steps)
        except learning.LearningError as error:
            raise CommandError(str(error)) from None
        command = "python manage.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        if dataset:
            folder = self.dataset_round(dataset, cut_off, shelves, config, out, command)
        else:
            try:
                owner = Company.objects.get(name=company)
            except Company.DoesNotExist:
                raise CommandError(f"--company: no company named {company!r}") from None
            try:
                learning_round = learning.run_learning_round(
                    company=owner, until=cut_off, gate_shelves=shelves, config=config, command=command,
                    log=self.stdout.write)
            except learning.LearningError as error:
                raise CommandError(str(error)) from None
            for reason in learning_round.report.get("reasons", []):
                self.stdout.write(f"  {reason}")
            self.stdout.write(f"round {learning_round.pk}: {learning_round.state}")
            folder = learning_round.candidate.folder
        self.stdout.write(str(folder))

    def cut_off(self, until: str | None) -> datetime | None:
        if not until:
            return None
        moment = parse_datetime(until)
        if moment is None:
            raise CommandError(f"--until: not an ISO time: {until!r}")
        return moment if timezone.is_aware(moment) else timezone.make_aware(moment)

    def dataset_round(self, dataset: Path, cut_off, shelves, config: LearningConfig, out: Path | None,
                      command: str) -> Path:
        try:
            data, frames, paths = coco_replay_frames(dataset)
        except CocoError as error:
            raise CommandError(str(error)) from None
        train, gate = learning.split_frames(frames, cut_off=cut_off, gate_shelves=shelves)
        round_data = RoundData(frames, paths, train, gate, cut_off=cut_off,
                               description=f"COCO dataset {data.path} ({len(frames)} frames)")
        out = out or settings.VAR_DIR / "models" / "datasets" / f"{data.path.parent.name}-{timezone.now():%Y%m%dT%H%M%S}"
        if out.exists():
            raise CommandError(f"--out: {out} already exists")
        try:
            result = run_round(round_data, promoted=learning.served_base(), out=out, config=config, command=command,
                               cache=settings.VAR_DIR / "cache", log=self.stdout.write)
        except ValueError as error:
            raise CommandError(f"{dataset}: {error}") from None
        for reason in result.reasons:
            self.stdout.write(f"  {reason}")
        return result.folder
