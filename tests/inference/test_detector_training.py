"""Writing the ultralytics layout, and loading models without a download. No training here: the
end-to-end run (train, val, predict, offline) is in test_detector.py."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from inference.detector import WeightsError, load_model
from inference.detector_training import DetectionSample, YoloDataset, train_detector, write_yolo_dataset


def jpeg(path: Path, size: tuple[int, int] = (160, 120), orientation: int | None = None) -> Path:
    """A JPEG whose left half is red and right half blue, optionally with an EXIF orientation."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:, : size[0] // 2] = (255, 0, 0)
    pixels[:, size[0] // 2:] = (0, 0, 255)
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


def rows(path: Path) -> list[list[float]]:
    return [[float(v) for v in line.split()] for line in path.read_text().splitlines()]


def test_labels_are_normalised_clipped_and_split_by_the_predicate(tmp_path):
    a = DetectionSample(jpeg(tmp_path / "src" / "a.jpg"), 160, 120,
                        ((10, 20, 40, 60), (150, 100, 30, 40), (0, 0, 0.0, 5)), name="shelf/a.jpg")
    b = DetectionSample(jpeg(tmp_path / "src" / "b.jpg"), 160, 120, ((0, 0, 160, 120),), name="shelf/b.jpg")
    c = DetectionSample(jpeg(tmp_path / "src" / "c.jpg"), 160, 120, (), name="shelf/c.jpg")

    dataset = write_yolo_dataset([a, b, c], tmp_path / "out", lambda s: s.name.endswith("b.jpg"))

    root = tmp_path / "out"
    assert (dataset.train_images, dataset.val_images, dataset.train_boxes, dataset.val_boxes) == (2, 1, 2, 1)
    first, second = rows(root / "labels" / "train" / "000000_a.txt")
    assert first == pytest.approx([0, 30 / 160, 50 / 120, 40 / 160, 60 / 120], abs=1e-6)
    # The box overhanging the corner keeps its visible part; the empty one is dropped.
    assert second == pytest.approx([0, 155 / 160, 110 / 120, 10 / 160, 20 / 120], abs=1e-6)
    assert rows(root / "labels" / "val" / "000001_b.txt") == [[0, 0.5, 0.5, 1, 1]]
    assert (root / "labels" / "train" / "000002_c.txt").read_text() == ""  # a background image
    assert sorted(p.name for p in (root / "images" / "val").iterdir()) == ["000001_b.jpg"]
    data = yaml.safe_load(dataset.data_yaml.read_text())
    assert data == {"path": str(root.resolve()), "train": "images/train", "val": "images/val", "names": {0: "product"}}


def test_plain_images_are_linked_not_copied(tmp_path):
    source = jpeg(tmp_path / "a.jpg")
    write_yolo_dataset([DetectionSample(source, 160, 120, ())], tmp_path / "out", lambda s: False)
    assert (tmp_path / "out" / "images" / "train" / "000000_a.jpg").stat().st_ino == source.stat().st_ino


def test_an_exif_rotated_image_is_reencoded_from_its_raw_pixels(tmp_path):
    source = jpeg(tmp_path / "a.jpg", size=(160, 120), orientation=6)
    assert cv2.imread(str(source)).shape[:2] == (160, 120)  # what ultralytics would read: turned upright

    dataset = write_yolo_dataset([DetectionSample(source, 160, 120, ((0, 0, 80, 120),), name="a")],
                                 tmp_path / "out", lambda s: False)

    assert dataset.reencoded == ("a",)
    written = tmp_path / "out" / "images" / "train" / "000000_a.png"
    decoded = cv2.imread(str(written))[:, :, ::-1]
    assert decoded.shape[:2] == (120, 160)  # the stored grid, which the boxes refer to
    assert np.abs(decoded.astype(int) - np.asarray(Image.open(source)).astype(int)).max() == 0
    assert decoded[60, 20, 0] > 200 and decoded[60, 140, 2] > 200  # red stays left, blue right
    assert Image.open(written).getexif().get(0x0112) is None


def test_a_jpeg_ultralytics_would_repair_in_place_is_copied_so_the_source_stays_untouched(tmp_path):
    source = jpeg(tmp_path / "a.jpg")
    source.write_bytes(source.read_bytes()[:-2])  # no end-of-image marker
    write_yolo_dataset([DetectionSample(source, 160, 120, ())], tmp_path / "out", lambda s: False)
    assert (tmp_path / "out" / "images" / "train" / "000000_a.jpg").stat().st_ino != source.stat().st_ino


def test_writing_again_replaces_the_previous_images(tmp_path):
    a, b = jpeg(tmp_path / "a.jpg"), jpeg(tmp_path / "b.jpg")
    write_yolo_dataset([DetectionSample(a, 160, 120, ()), DetectionSample(b, 160, 120, ())], tmp_path / "out",
                       lambda s: False)
    write_yolo_dataset([DetectionSample(b, 160, 120, ())], tmp_path / "out", lambda s: False)
    assert [p.name for p in (tmp_path / "out" / "images" / "train").iterdir()] == ["000000_b.jpg"]
    assert [p.name for p in (tmp_path / "out" / "labels" / "train").iterdir()] == ["000000_b.txt"]


def test_a_size_that_does_not_match_the_image_is_refused(tmp_path):
    sample = DetectionSample(jpeg(tmp_path / "a.jpg"), 120, 160, (), name="images/a.jpg")
    with pytest.raises(ValueError, match=r"images/a.jpg: image is 160x120, the dataset says 120x160"):
        write_yolo_dataset([sample], tmp_path / "out", lambda s: False)


def test_training_needs_both_splits(tmp_path):
    dataset = YoloDataset(tmp_path / "data.yaml", train_images=3, val_images=0, train_boxes=3, val_boxes=0)
    with pytest.raises(ValueError, match="needs training and validation images"):
        train_detector(dataset, tmp_path / "run")


def test_a_weights_name_that_is_not_a_local_file_is_refused_rather_than_downloaded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="yolov8n.pt: weights file not found"):
        load_model("yolov8n.pt")
    assert not (tmp_path / "yolov8n.pt").exists()


def test_a_file_that_is_not_a_checkpoint_raises_weights_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"bad.pt: not a YOLO weights file"):
        load_model(bad)


def test_an_unknown_model_yaml_raises_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="yolov99z.yaml"):
        load_model(tmp_path / "yolov99z.yaml")
