"""python manage.py train_detector COCO --out DIR: train the one-class product detector on CPU."""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotator.coco import CocoDataset, CocoError, load_coco
from inference import ultralytics_offline
from inference.detector_training import DetectionSample

DEFAULT_VAL_EVERY = 5


def load_samples(path: str) -> tuple[CocoDataset, list[DetectionSample]]:
    """The COCO dataset and one sample per image (every category counts as "product")."""
    try:
        dataset = load_coco(path)
    except CocoError as error:
        raise CommandError(str(error)) from None
    samples = [DetectionSample(image.path, image.width, image.height, tuple(box.bbox for box in image.boxes),
                               image.file_name) for image in dataset.images]
    return dataset, samples


def name_matcher(pattern: str, option: str) -> Callable[[DetectionSample], bool]:
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise CommandError(f"{option} {pattern!r}: invalid regular expression ({error})") from None
    return lambda sample: regex.search(sample.name) is not None


def every_nth_per_camera(dataset: CocoDataset, every: int) -> Callable[[DetectionSample], bool]:
    """Per camera in replay order, the ``every``-th image, the 2``every``-th, ..."""
    chosen: set[str] = set()
    position: dict[tuple[str, str], int] = {}
    for image in dataset.in_replay_order():
        index = position.get((image.store, image.camera), 0)
        position[(image.store, image.camera)] = index + 1
        if index % every == every - 1:
            chosen.add(image.file_name)
    return lambda sample: sample.name in chosen


class Command(BaseCommand):
    help = "Train the one-class product detector (ultralytics YOLO, CPU, nothing downloaded) on a COCO dataset."

    def add_arguments(self, parser):
        parser.add_argument("path", help="annotations json, or a folder holding annotations.json")
        parser.add_argument("--out", required=True,
                            help="folder for the converted dataset (dataset/) and the run (run/)")
        parser.add_argument("--val-match", default=None, metavar="REGEX",
                            help="validate on images whose file_name matches (default: every 5th image per camera)")
        parser.add_argument("--model", default="yolov8n.yaml",
                            help="ultralytics yaml to build from scratch (yolov8n.yaml, yolo11n.yaml) "
                                 "or a local .pt to start from")
        parser.add_argument("--epochs", type=int, default=50)
        parser.add_argument("--hours", type=float, default=None,
                            help="wall-clock budget: the number of epochs is fitted to it (overrides --epochs)")
        parser.add_argument("--imgsz", type=int, default=640)
        parser.add_argument("--batch", type=int, default=16)
        parser.add_argument("--patience", type=int, default=20, help="stop after this many epochs without improvement")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--cache", action="store_true", help="keep decoded images in memory between epochs")

    def handle(self, *args, path, out, val_match, model, epochs, hours, imgsz, batch, patience, seed, cache,
               **options):
        ultralytics_offline.prepare(Path(settings.VAR_DIR) / "ultralytics")
        from inference.detector import WeightsError
        from inference.detector_training import TrainConfig, train_detector, write_yolo_dataset

        if min(epochs, imgsz, batch) < 1 or (hours is not None and hours <= 0):
            raise CommandError(f"{path}: --epochs, --hours, --imgsz and --batch must be positive")
        if Path(model).suffix.lower() not in {".yaml", ".yml"} and not Path(model).is_file():
            raise CommandError(f"--model {model}: weights file not found (only local files are used)")
        dataset, samples = load_samples(path)
        if val_match:
            is_val, split = name_matcher(val_match, "--val-match"), f"--val-match {val_match!r}"
        else:
            every = DEFAULT_VAL_EVERY
            is_val, split = every_nth_per_camera(dataset, every), f"every {every}th image per camera"
        val_count = sum(1 for sample in samples if is_val(sample))
        if not val_count or val_count == len(samples):
            raise CommandError(f"{dataset.path}: {split} leaves {len(samples) - val_count} training and "
                               f"{val_count} validation images; both are needed")
        yolo_data = write_yolo_dataset(samples, Path(out).resolve() / "dataset", is_val)
        self.stdout.write(f"train: {yolo_data.train_images} images, {yolo_data.train_boxes} boxes; "
                          f"val ({split}): {yolo_data.val_images} images, {yolo_data.val_boxes} boxes")
        config = TrainConfig(model=model, epochs=epochs, hours=hours, imgsz=imgsz, batch=batch, patience=patience,
                             seed=seed, cache=cache)
        try:
            result = train_detector(yolo_data, Path(out).resolve() / "run", config)
        except (FileNotFoundError, WeightsError) as error:
            raise CommandError(f"--model {model}: {error}") from None
        self.stdout.write(self.style.SUCCESS(
            f"best weights: {result.best_weights}\n"
            f"val mAP@0.5 {result.map50:.3f}, mAP@0.5:0.95 {result.map50_95:.3f}"
        ))
