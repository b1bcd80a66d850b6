"""Tests of the demo data: the shipped GroceryStoreDataset subset and demo/compose.py."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo import compose as composer

SUBSET = composer.DEFAULT_SUBSET


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    composer.compose(out, seed=0)
    return out


@pytest.fixture(scope="module")
def coco(out_dir: Path) -> dict:
    return json.loads((out_dir / "annotations.json").read_text())


def frames_of(coco: dict, camera: str) -> list[dict]:
    images = [im for im in coco["images"] if im["camera"] == camera]
    return sorted(images, key=lambda im: im["captured_at"])


def boxes_of(coco: dict, image_id: int, sku: str | None = None) -> list[list[float]]:
    cat = {c["name"]: c["id"] for c in coco["categories"]}
    return [
        a["bbox"]
        for a in coco["annotations"]
        if a["image_id"] == image_id and (sku is None or a["category_id"] == cat[sku])
    ]


def camera_of(shelf: str) -> str:
    return next(c.name for c in composer.CAMERAS if c.shelf == shelf)


# ------------------------------------------------------------------ subset


def test_subset_catalog_layout() -> None:
    with open(SUBSET / "classes.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["sku", "name", "category"]
    assert 14 <= len(rows) <= 20
    for row in rows:
        folder = SUBSET / "catalog" / row["sku"]
        assert (folder / "iconic.jpg").is_file()
        photos = [p for p in folder.glob("*.jpg") if p.name != "iconic.jpg"]
        assert len(photos) >= 6
        for path in [folder / "iconic.jpg", *photos]:
            with Image.open(path) as img:
                assert max(img.size) <= 256
    assert "MIT License" in (SUBSET / "LICENSE").read_text()
    assert "Klasson" in (SUBSET / "README.md").read_text()
    size = sum(p.stat().st_size for p in SUBSET.rglob("*") if p.is_file())
    assert size < 3_200_000


# ------------------------------------------------------------------ COCO validity


def test_coco_is_valid(out_dir: Path, coco: dict) -> None:
    assert set(coco) == {"info", "images", "annotations", "categories"}
    assert "GroceryStoreDataset" in coco["info"]["license"]

    image_ids = [im["id"] for im in coco["images"]]
    assert len(image_ids) == len(set(image_ids)) == 24
    images = {im["id"]: im for im in coco["images"]}
    for im in coco["images"]:
        assert im["file_name"].startswith("images/") and im["file_name"].endswith(".jpg")
        with Image.open(out_dir / im["file_name"]) as img:
            assert img.size == (im["width"], im["height"])
        datetime.strptime(im["captured_at"], "%Y-%m-%dT%H:%M:%S")
        assert im["store"] == "demo-store"
    assert {(im["camera"], im["shelf"]) for im in coco["images"]} == {
        ("cam-1", "shelf-1"), ("cam-2", "shelf-2"), ("cam-3", "shelf-3")
    }

    cat_ids = {c["id"] for c in coco["categories"]}
    ann_ids = [a["id"] for a in coco["annotations"]]
    assert len(ann_ids) == len(set(ann_ids)) > 0
    eps = 1e-6
    for a in coco["annotations"]:
        assert a["image_id"] in images
        assert a["category_id"] in cat_ids
        assert a["iscrowd"] == 0
        x, y, w, h = a["bbox"]
        assert all(isinstance(v, float) for v in a["bbox"])
        im = images[a["image_id"]]
        assert w > 0 and h > 0
        assert x >= 0 and y >= 0
        assert x + w <= im["width"] + eps and y + h <= im["height"] + eps
        assert a["area"] == pytest.approx(w * h, abs=1.0)

    used = {a["category_id"] for a in coco["annotations"]}
    assert used == cat_ids, "every category appears on some shelf"


def test_categories_match_catalog(coco: dict) -> None:
    with open(SUBSET / "classes.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(c["name"], c["supercategory"]) for c in coco["categories"]] == [
        (r["sku"], r["category"]) for r in rows
    ]


def test_frames_increase_in_time(coco: dict) -> None:
    for cam in ("cam-1", "cam-2", "cam-3"):
        times = [im["captured_at"] for im in coco["images"] if im["camera"] == cam]
        assert times == sorted(times) and len(set(times)) == len(times) == 8
        first, last = (datetime.fromisoformat(t) for t in (times[0], times[-1]))
        assert (last - first).days >= 4


# ------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_output(out_dir: Path, tmp_path: Path) -> None:
    composer.compose(tmp_path, seed=0)
    for name in ("annotations.json", "scenario.json"):
        assert (tmp_path / name).read_bytes() == (out_dir / name).read_bytes()
    for image in sorted((out_dir / "images").glob("*.jpg")):
        assert (tmp_path / "images" / image.name).read_bytes() == image.read_bytes()


def test_other_seed_gives_other_frames(coco: dict, tmp_path: Path) -> None:
    other = composer.compose(tmp_path, seed=1).coco
    assert [a["bbox"] for a in other["annotations"]] != [a["bbox"] for a in coco["annotations"]]


# ------------------------------------------------------------------ scenario


def test_new_product_appears_midway(coco: dict) -> None:
    shelf, sku = composer.NEW_PRODUCT
    assert all(sku not in row.skus for cam in composer.CAMERAS for row in cam.planogram)
    present = [bool(boxes_of(coco, im["id"], sku)) for im in frames_of(coco, camera_of(shelf))]
    assert not any(present[:3])
    assert any(present[len(present) // 2 :])
    other_cams = [c.name for c in composer.CAMERAS if c.shelf != shelf]
    assert not any(boxes_of(coco, im["id"], sku) for cam in other_cams for im in frames_of(coco, cam))


def test_moved_product_changes_position(coco: dict) -> None:
    shelf, sku = composer.MOVED_PRODUCT
    frames = frames_of(coco, camera_of(shelf))
    centres = [[x + w / 2 for x, _, w, _ in boxes_of(coco, im["id"], sku)] for im in frames]
    before = [c for cs in centres[:3] for c in cs]
    after = [c for cs in centres[-3:] for c in cs]
    assert before and after
    assert abs(np.mean(after) - np.mean(before)) > 300


def test_empty_facings_and_sell_out(coco: dict) -> None:
    for cam in composer.CAMERAS:
        n_facings = sum(len(row.skus) for row in cam.planogram)
        counts = [len(boxes_of(coco, im["id"])) for im in frames_of(coco, cam.name)]
        assert max(counts) <= n_facings
        assert min(counts) < n_facings, f"{cam.name} never shows an empty facing"

    shelf, sku = composer.SOLD_OUT_PRODUCT
    present = [bool(boxes_of(coco, im["id"], sku)) for im in frames_of(coco, camera_of(shelf))]
    gone = [i for i, p in enumerate(present) if not p]
    assert present[0] and gone, "the product is on the shelf, then sold out"
    assert any(present[gone[0] + 1 :]), "and restocked later"


def test_lighting_differs_per_camera(out_dir: Path, coco: dict) -> None:
    def mean_rgb(cam: str) -> np.ndarray:
        pixels = [np.asarray(Image.open(out_dir / im["file_name"]), np.float32) for im in frames_of(coco, cam)[:2]]
        return np.mean([p.reshape(-1, 3).mean(axis=0) for p in pixels], axis=0)

    warm, cold = mean_rgb("cam-1"), mean_rgb("cam-2")
    assert warm.mean() < cold.mean()  # dim vs bright
    assert warm[0] / warm[2] > cold[0] / cold[2]  # warm vs cold white balance


def test_cli(tmp_path: Path) -> None:
    composer.main(["--out", str(tmp_path), "--seed", "3", "--days", "3", "--frames-per-camera", "5"])
    data = json.loads((tmp_path / "annotations.json").read_text())
    assert len(data["images"]) == 15
    assert all((tmp_path / im["file_name"]).is_file() for im in data["images"])
