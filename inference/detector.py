"""Product detector: an ultralytics YOLO model loaded from a local weights file.

Nothing is downloaded: weights come from a path that must exist; building a model by name would
make ultralytics fetch it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Detection:
    x: float
    y: float
    w: float
    h: float
    score: float


class YoloDetector:
    """Finds product boxes on a frame. One class: "product"."""

    def __init__(self, weights: str | Path, confidence: float = 0.25, image_size: int = 640, max_boxes: int = 300):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"detector weights not found: {path}")
        from ultralytics import YOLO

        self.model = YOLO(str(path))
        self.confidence = confidence
        self.image_size = image_size
        self.max_boxes = max_boxes

    def detect(self, image: Image.Image) -> list[Detection]:
        # ultralytics takes numpy frames as BGR.
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
