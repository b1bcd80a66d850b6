"""Preparing a COCO shelf dataset for a replay: frames with their ground truth, and every crop's
embedding (computed once per embedder and dataset, then cached under VAR_DIR/cache)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annotator.coco import CocoDataset, CocoError, load_coco
from annotator.models import Company, Label
from inference.embedder import Embedder, load_embedder
from inference.images import ImageError, crop_boxes, open_image
from inference.replay import ReplayFrame, cached_vectors


@dataclass
class PreparedReplay:
    dataset: CocoDataset
    frames: list[ReplayFrame]
    vectors: dict[int, np.ndarray]
    embedder: Embedder
    paths: dict[int, Path]
    cache: Path

    @property
    def embedder_name(self) -> str:
        return self.embedder.name

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def vectors_of(self) -> Callable[[ReplayFrame], np.ndarray]:
        return lambda frame: self.vectors[frame.frame_id]


def coco_replay_frames(dataset: str | Path) -> tuple[CocoDataset, list[ReplayFrame], dict[int, Path]]:
    """A labelled COCO shelf dataset as replay frames and their image paths. Raises CocoError (naming
    the file and the problem) for a dataset that cannot be replayed."""
    data = load_coco(dataset)
    unlabelled = [b.id for image in data.images for b in image.boxes if b.category_id is None]
    if unlabelled:
        raise CocoError(f"{data.path}: annotation {unlabelled[0]} has no category; a replay needs ground truth")
    frames = [
        ReplayFrame(
            frame_id=image.id, file_name=image.file_name, store=image.store, camera=image.camera, shelf=image.shelf,
            captured_at=image.captured_at, width=image.width, height=image.height,
            boxes=np.array([b.bbox for b in image.boxes], np.float64).reshape(-1, 4),
            truth=np.array([b.category_id for b in image.boxes], np.int64),
        )
        for image in data.images
    ]
    return data, frames, {image.id: image.path for image in data.images}


def prepare_replay(*, dataset: str | Path, embedder: str | Path | None, cache: Path) -> PreparedReplay:
    """Raises CocoError (naming the file and the problem) for a dataset that cannot be replayed."""
    data, frames, paths = coco_replay_frames(dataset)
    model = load_embedder(embedder or None)

    def embed(frame: ReplayFrame) -> np.ndarray:
        try:
            image = open_image(paths[frame.frame_id])
        except ImageError as error:
            raise CocoError(f"{paths[frame.frame_id]}: {error}") from None
        return model.embed(crop_boxes(image, [tuple(b) for b in frame.boxes]))

    key = f"{model.name}|{data.path.resolve()}|{data.path.stat().st_mtime_ns}"
    vectors = cached_vectors(frames, embed, cache, key=key)
    return PreparedReplay(data, frames, vectors, model, paths, cache)


def detect_replay(*, prepared: PreparedReplay, weights: str | Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Every frame's detected boxes (D, 4) and their embeddings, computed once per detector,
    embedder and dataset. Raises FileNotFoundError for missing weights."""
    from inference.detector import YoloDetector

    weights = Path(weights)
    detector = YoloDetector(weights)

    def detect(frame: ReplayFrame) -> np.ndarray:
        image = open_image(prepared.paths[frame.frame_id])
        boxes = np.array([(d.x, d.y, d.w, d.h) for d in detector.detect(image)], np.float64).reshape(-1, 4)
        vectors = prepared.embedder.embed(crop_boxes(image, [tuple(b) for b in boxes])).reshape(len(boxes), -1)
        return np.hstack([boxes, vectors]) if len(boxes) else np.zeros((0, 4 + prepared.dim))

    key = (f"detections|{weights.resolve()}|{weights.stat().st_mtime_ns}|{prepared.embedder_name}|"
           f"{prepared.dataset.path.resolve()}|{prepared.dataset.path.stat().st_mtime_ns}")
    rows = cached_vectors(prepared.frames, detect, prepared.cache, key=key)
    return {frame_id: (row[:, :4], row[:, 4:].astype(np.float32)) for frame_id, row in rows.items()}


def company_replay(*, company: Company, cache: Path) -> tuple[list[ReplayFrame], dict[int, np.ndarray], Embedder]:
    """The company's labelled frames as a replay (``services.learning.company_frames``) with every
    labelled crop embedded by the configured embedder, cached per embedder and labels."""
    from annotator import engines
    from annotator.services.learning import company_frames

    frames, paths = company_frames(company=company, cache=cache)
    model = engines.embedder()

    def embed(replay_frame: ReplayFrame) -> np.ndarray:
        image = open_image(paths[replay_frame.frame_id])
        return model.embed(crop_boxes(image, [tuple(b) for b in replay_frame.boxes]))

    labels = Label.objects.filter(is_current=True, box__frame__company=company)
    latest = labels.order_by("-updated_at").values_list("updated_at", flat=True).first()
    key = f"company|{company.pk}|{model.name}|{labels.count()}|{latest.isoformat() if latest else ''}"
    return frames, cached_vectors(frames, embed, cache, key=key), model
