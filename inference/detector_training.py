"""Training and evaluating the one-class product detector with ultralytics, on CPU, offline.

A dataset is a list of ``DetectionSample`` (an image file and its boxes in raw pixels). It is
written in the ultralytics layout (``images/{train,val}``, ``labels/{train,val}``, ``data.yaml``,
one class "product"), then trained or validated on. Boxes refer to the stored pixel grid, while
ultralytics (through cv2 and its own checks) turns images by their EXIF orientation: an image whose
orientation tag is not 1 is re-encoded from its raw pixels, without the tag, as PNG; any other is
hard-linked (or copied) as it is.

Models are built from an ultralytics yaml (``yolov8n.yaml``, ``yolo11n.yaml``) or start from a local
``.pt`` file; a ``.pt`` name that is not a file here is refused, since ultralytics would download it.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from PIL import Image

from inference.config import Config
from inference.detector import load_model, trained_image_size

CLASS_NAME = "product"
EXIF_ORIENTATION = 0x0112
LINKABLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}  # read by ultralytics as is

Box = tuple[float, float, float, float]  # x, y, w, h in pixels of the stored image, top-left origin


@dataclass(frozen=True)
class DetectionSample:
    """One image and its product boxes. ``name`` identifies it in messages and splits (the dataset's
    file name); ``width``/``height`` are the stored pixel grid's, which the boxes refer to."""

    image_path: Path
    width: int
    height: int
    boxes: tuple[Box, ...]
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or self.image_path.name


@dataclass(frozen=True)
class YoloDataset:
    """A dataset written in the ultralytics layout."""

    data_yaml: Path
    train_images: int
    val_images: int
    train_boxes: int
    val_boxes: int
    reencoded: tuple[str, ...] = ()  # samples re-encoded to drop their EXIF orientation


@dataclass(frozen=True)
class TrainConfig(Config):
    """model: an ultralytics yaml (built from scratch) or a local ``.pt`` to start from.
    hours: a wall-clock budget; when set, ultralytics fits the number of epochs (and the learning
    rate schedule) to it after each epoch, and ``epochs`` only seeds the first estimate.
    nominal_batch: ultralytics accumulates gradients up to this many images per optimizer step
    (its default, 64, gives a 156-image set 2 steps an epoch); None steps after every batch."""

    model: str = "yolov8n.yaml"
    epochs: int = 50
    hours: float | None = None
    nominal_batch: int | None = None
    imgsz: int = 640
    batch: int = 16
    workers: int = 0
    seed: int = 0
    patience: int = 20
    plots: bool = True
    cache: bool = False  # keep decoded, resized images in memory between epochs
    verbose: bool = True
    extra: dict = field(default_factory=dict)  # any other ultralytics train argument


@dataclass(frozen=True)
class TrainResult:
    best_weights: Path
    run_dir: Path
    map50: float
    map50_95: float


@dataclass(frozen=True)
class EvalResult:
    map50: float
    map50_95: float
    precision: float
    recall: float
    images: int
    boxes: int


def write_yolo_dataset(
    samples: Sequence[DetectionSample], out_dir: str | Path, is_val: Callable[[DetectionSample], bool]
) -> YoloDataset:
    """Write ``samples`` under ``out_dir`` in the ultralytics layout, ``is_val`` choosing the
    validation images. ``images/`` and ``labels/`` under ``out_dir`` are replaced."""
    root = Path(out_dir).resolve()
    for sub in ("images", "labels"):
        shutil.rmtree(root / sub, ignore_errors=True)
    counts = {"train": [0, 0], "val": [0, 0]}
    reencoded = []
    for index, sample in enumerate(samples):
        split = "val" if is_val(sample) else "train"
        stem = f"{index:06d}_{_safe_stem(sample.image_path)}"
        if _write_image(sample, root / "images" / split, stem):
            reencoded.append(sample.label)
        rows = _label_rows(sample)
        labels = root / "labels" / split
        labels.mkdir(parents=True, exist_ok=True)
        (labels / f"{stem}.txt").write_text("".join(f"{row}\n" for row in rows))
        counts[split][0] += 1
        counts[split][1] += len(rows)
    for split in counts:
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    data_yaml = root / "data.yaml"
    data_yaml.write_text(yaml.safe_dump(
        {"path": str(root), "train": "images/train", "val": "images/val", "names": {0: CLASS_NAME}}, sort_keys=False
    ))
    return YoloDataset(data_yaml, counts["train"][0], counts["val"][0], counts["train"][1], counts["val"][1],
                       tuple(reencoded))


def train_detector(dataset: YoloDataset, run_dir: str | Path, config: TrainConfig = TrainConfig()) -> TrainResult:
    """Train on CPU; ``run_dir`` is where ultralytics writes (a new ``run_dir`` gets a suffix
    rather than overwriting an existing one). Returns best.pt and its validation mAPs."""
    if not dataset.train_images or not dataset.val_images:
        raise ValueError(f"{dataset.data_yaml}: needs training and validation images "
                         f"(has {dataset.train_images} and {dataset.val_images})")
    model = load_model(config.model)
    run_dir = Path(run_dir).resolve()
    from_checkpoint = bool(model.ckpt)
    args = dict(
        data=str(dataset.data_yaml), epochs=config.epochs, imgsz=config.imgsz, batch=config.batch,
        workers=config.workers, seed=config.seed, deterministic=True, patience=config.patience,
        nbs=config.nominal_batch or config.batch,
        device="cpu", amp=False, pretrained=from_checkpoint, plots=config.plots, cache=config.cache,
        project=str(run_dir.parent), name=run_dir.name, exist_ok=False, verbose=config.verbose,
    )
    if config.hours:
        args["time"] = config.hours
    model.train(**{**args, **config.extra})
    trainer = model.trainer
    metrics = trainer.validator.metrics if trainer.validator is not None else None
    best = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
    return TrainResult(
        best_weights=best, run_dir=Path(trainer.save_dir),
        map50=float(metrics.box.map50) if metrics else 0.0, map50_95=float(metrics.box.map) if metrics else 0.0,
    )


def evaluate_detector(
    weights: str | Path, samples: Sequence[DetectionSample], imgsz: int | None = None, *, batch: int = 8,
    work_dir: str | Path | None = None, plots: bool = False, verbose: bool = False,
) -> EvalResult:
    """Validate ``weights`` on ``samples`` (all of them) with ultralytics' own metrics: mAP@0.5,
    mAP@0.5:0.95, and precision/recall at the confidence that maximises F1. ``imgsz`` defaults to
    the size the weights were trained at (640 when unknown). The converted dataset and the
    validation run go to ``work_dir`` (kept) or to a temporary folder."""
    if not samples:
        raise ValueError("no images to evaluate on")
    model = load_model(weights)
    if imgsz is None:
        imgsz = trained_image_size(model)
    with tempfile.TemporaryDirectory(prefix="detector-eval-") as scratch:
        root = Path(work_dir).resolve() if work_dir else Path(scratch)
        dataset = write_yolo_dataset(samples, root / "dataset", lambda sample: True)
        metrics = model.val(
            data=str(dataset.data_yaml), split="val", imgsz=imgsz, batch=batch, device="cpu", workers=0,
            plots=plots, verbose=verbose, project=str(root), name="val", exist_ok=True,
        )
        return EvalResult(
            map50=float(metrics.box.map50), map50_95=float(metrics.box.map), precision=float(metrics.box.mp),
            recall=float(metrics.box.mr), images=dataset.val_images, boxes=dataset.val_boxes,
        )


def _write_image(sample: DetectionSample, folder: Path, stem: str) -> bool:
    """Put the image into ``folder``; True when it had to be re-encoded."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = sample.image_path.suffix.lower()
    with Image.open(sample.image_path) as image:
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
        if (image.width, image.height) != (sample.width, sample.height):
            raise ValueError(f"{sample.label}: image is {image.width}x{image.height}, "
                             f"the dataset says {sample.width}x{sample.height}")
        if orientation not in (0, 1) or suffix not in LINKABLE_SUFFIXES:
            image.load()
            raw = image.convert("RGB") if image.mode not in ("RGB", "L") else image
            raw.save(folder / f"{stem}.png")  # PNG: lossless, and PIL writes no EXIF unless asked
            return True
    target = folder / f"{stem}{suffix}"
    if suffix in {".jpg", ".jpeg"} and not _ends_with_jpeg_eoi(sample.image_path):
        # ultralytics rewrites such a JPEG in place to repair it: never through a link to the source.
        shutil.copyfile(sample.image_path, target)
        return False
    try:
        os.link(sample.image_path, target)
    except OSError:
        shutil.copyfile(sample.image_path, target)
    return False


def _ends_with_jpeg_eoi(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-2, os.SEEK_END)
        return handle.read() == b"\xff\xd9"


def _label_rows(sample: DetectionSample) -> list[str]:
    """One ``0 cx cy w h`` row (normalised) per box, clipped to the image; empty boxes dropped."""
    rows = []
    for x, y, w, h in sample.boxes:
        left, top = max(x, 0.0), max(y, 0.0)
        right, bottom = min(x + w, sample.width), min(y + h, sample.height)
        if right <= left or bottom <= top:
            continue
        cx, cy = (left + right) / 2 / sample.width, (top + bottom) / 2 / sample.height
        bw, bh = (right - left) / sample.width, (bottom - top) / sample.height
        rows.append(f"0 {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
    return rows


def _safe_stem(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)[:80] or "image"
