"""COCO shelf datasets: parse and validate before anything is written.

The format is COCO detection json with per-image fields for where and when a frame was taken
(``captured_at``, ``store``, ``camera``, ``shelf``), as in the Varol shelves set. Every problem is
reported as one line naming the file and what is wrong, so a bad file is fixed, not debugged.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from annotator.services.frames import check_frame_image
from inference.images import ImageError

BBOX_TOLERANCE_PX = 0.5  # rounding in exported coordinates; more than this is a real error


class CocoError(ValueError):
    """A dataset that cannot be imported; the message names the file and the problem."""


@dataclass(frozen=True)
class CocoCategory:
    id: int
    name: str
    supercategory: str


@dataclass(frozen=True)
class CocoBox:
    id: int
    bbox: tuple[float, float, float, float]
    category_id: int | None


@dataclass
class CocoImage:
    id: int
    path: Path
    file_name: str
    width: int
    height: int
    captured_at: datetime | None
    store: str
    camera: str
    shelf: str
    boxes: list[CocoBox] = field(default_factory=list)


@dataclass
class CocoDataset:
    path: Path
    categories: dict[int, CocoCategory]
    images: list[CocoImage]
    info: dict

    @property
    def missing_captured_at(self) -> int:
        return sum(1 for image in self.images if image.captured_at is None)

    def split_by_schedule(self, annotate_every: int) -> tuple[CocoDataset, CocoDataset]:
        """(annotated, incoming): per camera in replay order, the first frame and every
        ``annotate_every``-th after it are annotated, the others wait for suggestions."""
        annotated, incoming = [], []
        position: dict[tuple[str, str], int] = {}
        for image in self.in_replay_order():
            index = position.get((image.store, image.camera), 0)
            position[(image.store, image.camera)] = index + 1
            (annotated if index % annotate_every == 0 else incoming).append(image)
        return (CocoDataset(self.path, self.categories, annotated, self.info),
                CocoDataset(self.path, self.categories, incoming, self.info))

    def in_replay_order(self) -> list[CocoImage]:
        """Per camera, by capture time; images without a time follow by file name."""
        return sorted(
            self.images,
            key=lambda im: (im.store, im.camera, im.captured_at is None, im.captured_at or datetime.min, im.file_name),
        )


def load_coco(path: str | Path, *, check_images: bool = True, default_location: str = "default") -> CocoDataset:
    """Read and validate a COCO shelf dataset. Raises CocoError naming the file and the problem.
    With ``check_images`` every image is read: it must be a frame the site takes (JPEG, PNG or WebP,
    at most FRAME_MAX_PIXELS; the pixels are counted before anything is decoded) and whole."""
    path = Path(path)
    if path.is_dir():
        path = path / "annotations.json"
    where = str(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CocoError(f"{where}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CocoError(f"{where}: invalid json ({error})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("images"), list):
        raise CocoError(f"{where}: not a COCO dataset (no 'images' list)")

    categories: dict[int, CocoCategory] = {}
    for entry in raw.get("categories") or []:
        try:
            category = CocoCategory(int(entry["id"]), str(entry["name"]).strip(), str(entry.get("supercategory") or ""))
        except (KeyError, TypeError, ValueError):
            raise CocoError(f"{where}: category {entry!r} needs an integer 'id' and a 'name'") from None
        if not category.name:
            raise CocoError(f"{where}: category {category.id} has an empty name")
        if category.id in categories:
            raise CocoError(f"{where}: category id {category.id} appears twice")
        categories[category.id] = category

    images: dict[int, CocoImage] = {}
    for entry in raw["images"]:
        image = _parse_image(entry, path, where, default_location, check_images)
        if image.id in images:
            raise CocoError(f"{where}: image id {image.id} appears twice")
        images[image.id] = image

    seen_boxes: set[int] = set()
    for entry in raw.get("annotations") or []:
        try:
            box_id = int(entry["id"])
            image_id = int(entry["image_id"])
            x, y, w, h = (float(v) for v in entry["bbox"])
        except (KeyError, TypeError, ValueError):
            raise CocoError(f"{where}: annotation {entry.get('id')!r} needs 'id', 'image_id' and a 4-number 'bbox'") from None
        if box_id in seen_boxes:
            raise CocoError(f"{where}: annotation id {box_id} appears twice")
        seen_boxes.add(box_id)
        image = images.get(image_id)
        if image is None:
            raise CocoError(f"{where}: annotation {box_id} refers to unknown image {image_id}")
        category_id = entry.get("category_id")
        if category_id is not None and int(category_id) not in categories:
            raise CocoError(f"{where}: annotation {box_id} has unknown category {category_id}")
        if w <= 0 or h <= 0:
            raise CocoError(f"{where}: annotation {box_id} (image {image.file_name}) has an empty bbox {[x, y, w, h]}")
        tol = BBOX_TOLERANCE_PX
        if x < -tol or y < -tol or x + w > image.width + tol or y + h > image.height + tol:
            raise CocoError(
                f"{where}: annotation {box_id} bbox {[x, y, w, h]} lies outside its image "
                f"{image.file_name} ({image.width}x{image.height})"
            )
        x, y = max(x, 0.0), max(y, 0.0)
        w, h = min(w, image.width - x), min(h, image.height - y)
        image.boxes.append(CocoBox(box_id, (x, y, w, h), int(category_id) if category_id is not None else None))

    return CocoDataset(path=path, categories=categories, images=list(images.values()), info=raw.get("info") or {})


def _parse_image(entry: dict, json_path: Path, where: str, default_location: str, check_images: bool) -> CocoImage:
    try:
        image_id = int(entry["id"])
        file_name = str(entry["file_name"])
    except (KeyError, TypeError, ValueError):
        raise CocoError(f"{where}: image {entry!r} needs an integer 'id' and a 'file_name'") from None
    image_path = (json_path.parent / file_name).resolve()
    if not image_path.is_file():
        raise CocoError(f"{where}: image {image_id} file not found: {image_path}")
    width, height = entry.get("width"), entry.get("height")
    if check_images or not (width and height):
        try:
            info = check_frame_image(image_path)
        except ImageError as error:
            raise CocoError(f"{image_path}: {error}") from None
        actual = info.width, info.height
        if width and height and (int(width), int(height)) != actual:
            raise CocoError(
                f"{where}: image {file_name} is {actual[0]}x{actual[1]} but the json says {width}x{height}"
            )
        width, height = actual
    captured_at = entry.get("captured_at")
    if captured_at:
        try:
            captured = datetime.fromisoformat(str(captured_at))
        except ValueError:
            raise CocoError(f"{where}: image {file_name} has an unreadable captured_at {captured_at!r}") from None
    else:
        captured = None
    store = str(entry.get("store") or default_location)
    camera = str(entry.get("camera") or store)
    shelf = str(entry.get("shelf") or camera)
    return CocoImage(image_id, image_path, file_name, int(width), int(height), captured, store, camera, shelf)
