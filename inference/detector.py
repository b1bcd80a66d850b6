"""Product detector: an ultralytics YOLO model loaded from a local weights file.

Nothing is downloaded: weights come from a path that must exist (building a model by name would
make ultralytics fetch it), and ultralytics is set up offline before it is imported
(see the ``ultralytics_offline`` module). Frames are taken as decoded pixels, so no EXIF orientation is
applied: boxes come back in the stored pixel grid, as every box in the data is.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from inference import ultralytics_offline


class WeightsError(ValueError):
    """A model that cannot be loaded; the message names the file and the problem."""


def load_model(model: str | Path):
    """An ultralytics YOLO model from a yaml (a file, or a name ultralytics ships such as
    ``yolov8n.yaml``) or from a local weights file. Never downloads."""
    ultralytics_offline.prepare()
    from ultralytics import YOLO

    ultralytics_offline.restore_pillow_open()

    text = str(model)
    suffix = Path(text).suffix.lower()
    if suffix in {".yaml", ".yml"}:
        try:
            return YOLO(text, task="detect")
        except (FileNotFoundError, KeyError, ValueError, TypeError, OSError) as error:
            raise WeightsError(f"{text}: not a usable model yaml ({' '.join(str(error).split())[:300]})") from None
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found (only local files are used, nothing is downloaded)")
    try:
        return YOLO(str(path), task="detect")
    except Exception as error:  # ultralytics and torch raise many kinds on a bad file
        reason = " ".join(str(error).split())  # one line: ultralytics' messages span several
        raise WeightsError(f"{path}: not a YOLO weights file ({type(error).__name__}: {reason[:300]})") from None


@dataclass(frozen=True)
class Detection:
    x: float
    y: float
    w: float
    h: float
    score: float


def trained_image_size(model, default: int = 640) -> int:
    """The input size a YOLO checkpoint was trained at (predicting at another size costs recall)."""
    return int((getattr(model, "ckpt", None) or {}).get("train_args", {}).get("imgsz") or default)


class YoloDetector:
    """Finds product boxes on a frame. One class: "product".

    Raises FileNotFoundError when the weights file is missing and ``WeightsError`` when it is not
    a YOLO checkpoint."""

    def __init__(self, weights: str | Path, confidence: float = 0.25, image_size: int | None = None,
                 max_boxes: int = 300):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"detector weights not found: {path}")
        self.model = load_model(path)
        self.confidence = confidence
        self.image_size = image_size or trained_image_size(self.model)
        self.max_boxes = max_boxes

    def detect(self, image: Image.Image) -> list[Detection]:
        """Boxes on ``image`` (pixels as decoded, e.g. by ``inference.images.open_image``), best first."""
        # ultralytics takes numpy frames as BGR; an array carries no EXIF, so nothing is rotated.
        frame = np.asarray(image.convert("RGB"))[:, :, ::-1]
        result = self.model.predict(
            frame, conf=self.confidence, imgsz=self.image_size, max_det=self.max_boxes, verbose=False, device="cpu"
        )[0]
        xyxy = result.boxes.xyxy.cpu().numpy()
        scores = result.boxes.conf.cpu().numpy()
        return [
            Detection(x=float(x1), y=float(y1), w=float(x2 - x1), h=float(y2 - y1), score=float(score))
            for (x1, y1, x2, y2), score in zip(xyxy, scores)
            if x2 > x1 and y2 > y1
        ]
