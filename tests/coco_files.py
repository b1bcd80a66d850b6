"""Building small COCO shelf datasets on disk for tests."""
from __future__ import annotations

import json
from pathlib import Path

from tests.factories import shelf_image


def write_coco(root: Path, frames: list[dict], categories: list[dict] | None = None) -> Path:
    """frames: [{"name", "captured_at", "store", "camera", "shelf", "boxes": [(x, y, w, h, category_id)]}].
    Images are drawn with one block per box; returns the json path."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    categories = categories or [{"id": 1, "name": "other-product", "supercategory": "shelf"},
                                {"id": 2, "name": "brand-a", "supercategory": "cigarettes"}]
    images, annotations = [], []
    for image_id, frame in enumerate(frames, start=1):
        size = frame.get("size", (320, 160))
        blocks = [((int(x), int(y), int(w), int(h)), int(c)) for x, y, w, h, c in frame["boxes"]]
        (root / "images" / frame["name"]).write_bytes(shelf_image(size, blocks))
        images.append({"id": image_id, "file_name": f"images/{frame['name']}", "width": size[0], "height": size[1],
                       "captured_at": frame.get("captured_at"), "store": frame.get("store", "store-1"),
                       "camera": frame.get("camera", "cam-1"), "shelf": frame.get("shelf", "shelf-1")})
        for x, y, w, h, category in frame["boxes"]:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    path = root / "annotations.json"
    path.write_text(json.dumps({"info": {}, "images": images, "annotations": annotations, "categories": categories}))
    return path


def two_frames(root: Path) -> Path:
    return write_coco(root, [
        {"name": "a.jpg", "captured_at": "2024-01-01T10:00:00", "boxes": [(10, 10, 40, 60, 1), (60, 10, 40, 60, 2)]},
        {"name": "b.jpg", "captured_at": None, "boxes": [(12, 10, 40, 60, 2)]},
    ])
