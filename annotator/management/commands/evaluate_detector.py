"""python manage.py evaluate_detector COCO --weights PT: mAP@0.5, precision, recall on a COCO shelf dataset."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotator.management.commands.train_detector import load_samples, name_matcher
from inference import ultralytics_offline


class Command(BaseCommand):
    help = "Evaluate a product detector (YOLO weights) on a COCO shelf dataset: mAP@0.5, precision, recall."

    def add_arguments(self, parser):
        parser.add_argument("path", help="annotations json, or a folder holding annotations.json")
        parser.add_argument("--weights", required=True, help="local YOLO weights file (.pt)")
        parser.add_argument("--match", default=None, metavar="REGEX", help="only images whose file_name matches")
        parser.add_argument("--imgsz", type=int, default=None, help="default: the size the weights were trained at")
        parser.add_argument("--out", default=None, help="keep the converted images and the validation plots here")

    def handle(self, *args, path, weights, match, imgsz, out, **options):
        ultralytics_offline.prepare(Path(settings.VAR_DIR) / "ultralytics")
        from inference.detector import WeightsError
        from inference.detector_training import evaluate_detector

        if imgsz is not None and imgsz < 1:
            raise CommandError(f"{path}: --imgsz must be positive")
        if not Path(weights).is_file():
            raise CommandError(f"{weights}: weights file not found")
        dataset, samples = load_samples(path)
        if match:
            keep = name_matcher(match, "--match")
            samples = [sample for sample in samples if keep(sample)]
            if not samples:
                raise CommandError(f"{dataset.path}: --match {match!r} matches no image")
        if not samples:
            raise CommandError(f"{dataset.path}: no images")
        try:
            result = evaluate_detector(weights, samples, imgsz, work_dir=out, plots=out is not None)
        except WeightsError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            f"{result.images} images, {result.boxes} boxes: mAP@0.5 {result.map50:.3f}  "
            f"mAP@0.5:0.95 {result.map50_95:.3f}  precision {result.precision:.3f}  recall {result.recall:.3f}"
        )
