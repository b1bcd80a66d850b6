"""train_detector and evaluate_detector: splits, output, and one-line errors. Training itself is
stubbed here (test_detector.py trains for real); evaluation runs for real on an untrained model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from inference import detector_training, ultralytics_offline
from inference.detector_training import TrainResult
from tests.coco_files import write_coco


def one_box_frames(names_and_cameras: list[tuple[str, str, str]]) -> list[dict]:
    """[(name, camera, captured_at)] -> frames of 160x160 with one product each."""
    return [{"name": name, "camera": camera, "captured_at": at, "size": (160, 160), "boxes": [(20, 30, 60, 80, 1)]}
            for name, camera, at in names_and_cameras]


@pytest.fixture
def coco(tmp_path) -> Path:
    # Camera A has six frames, listed out of time order; camera B four (too few for a 5th).
    a = [(f"a{i}.jpg", "cam-a", f"2024-01-01T10:0{9 - i}:00") for i in range(6)]
    b = [(f"b{i}.jpg", "cam-b", f"2024-01-01T10:0{i}:00") for i in range(4)]
    return write_coco(tmp_path / "coco", one_box_frames(a + b))


@pytest.fixture
def fake_training(monkeypatch, tmp_path):
    calls = []

    def train(dataset, run_dir, config):
        calls.append((dataset, Path(run_dir), config))
        return TrainResult(best_weights=Path(run_dir) / "weights" / "best.pt", run_dir=Path(run_dir),
                           map50=0.8125, map50_95=0.5)

    monkeypatch.setattr(detector_training, "train_detector", train)
    return calls


def val_names(out: Path) -> list[str]:
    return sorted(p.name.split("_", 1)[1] for p in (out / "dataset" / "images" / "val").iterdir())


def test_train_validates_on_every_fifth_frame_per_camera_by_default(coco, tmp_path, fake_training, capsys):
    call_command("train_detector", str(coco), out=str(tmp_path / "out"), epochs=3, imgsz=64, batch=2)

    # In time order camera A is a5, a4, ..., a0: its fifth frame is a1.
    assert val_names(tmp_path / "out") == ["a1.jpg"]
    [(dataset, run_dir, config)] = fake_training
    assert (dataset.train_images, dataset.val_images) == (9, 1)
    assert run_dir == (tmp_path / "out" / "run").resolve()
    assert (config.model, config.epochs, config.imgsz, config.batch, config.hours) == ("yolov8n.yaml", 3, 64, 2, None)
    out = capsys.readouterr().out
    assert "train: 9 images, 9 boxes; val (every 5th image per camera): 1 images, 1 boxes" in out
    assert "val mAP@0.5 0.812, mAP@0.5:0.95 0.500" in out
    assert str(tmp_path / "out" / "run" / "weights" / "best.pt") in out


def test_train_val_match_picks_validation_images_by_file_name(coco, tmp_path, fake_training):
    call_command("train_detector", str(coco), out=str(tmp_path / "out"), val_match=r"b[23]\.jpg$",
                 model="yolo11n.yaml", hours=0.25)
    assert val_names(tmp_path / "out") == ["b2.jpg", "b3.jpg"]
    [(dataset, _, config)] = fake_training
    assert (dataset.train_images, config.model, config.hours) == (8, "yolo11n.yaml", 0.25)


@pytest.mark.parametrize("options, message", [
    ({"val_match": "nothing-matches"},
     r"annotations.json: --val-match 'nothing-matches' leaves 10 training and 0 validation"),
    ({"val_match": "."}, r"leaves 0 training and 10 validation images"),
    ({"val_match": "(unclosed"}, r"--val-match '\(unclosed': invalid regular expression"),
    ({"epochs": 0}, r"annotations.json: --epochs, --hours, --imgsz and --batch must be positive"),
])
def test_train_refuses_a_bad_split_or_option_in_one_line(coco, tmp_path, fake_training, options, message):
    with pytest.raises(CommandError, match=message) as error:
        call_command("train_detector", str(coco), out=str(tmp_path / "out"), **options)
    assert "\n" not in str(error.value)
    assert fake_training == [] and not (tmp_path / "out" / "dataset").exists()


def test_train_names_the_file_of_a_bad_dataset(tmp_path, fake_training):
    broken = tmp_path / "annotations.json"
    broken.write_text("{not json")
    with pytest.raises(CommandError, match=rf"{broken}: invalid json"):
        call_command("train_detector", str(broken), out=str(tmp_path / "out"))


@pytest.mark.parametrize("model, message", [
    ("yolov8n.pt", r"--model yolov8n.pt: weights file not found"),
    ("yolov99z.yaml", r"--model yolov99z.yaml: yolov99z.yaml: not a usable model yaml"),
])
def test_train_refuses_a_model_it_would_have_to_download(coco, tmp_path, monkeypatch, model, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CommandError, match=message) as error:
        call_command("train_detector", str(coco), out=str(tmp_path / "out"), model=model, val_match="b3")
    assert "\n" not in str(error.value)
    assert not list(tmp_path.rglob("*.pt"))


@pytest.fixture(scope="module")
def untrained_weights(tmp_path_factory) -> Path:
    """A one-class YOLOv8n checkpoint with random weights, as a trained one is stored."""
    ultralytics_offline.prepare(Path(settings.VAR_DIR) / "ultralytics")
    import torch
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=1, verbose=False)
    model.names = {0: "product"}
    path = tmp_path_factory.mktemp("weights") / "untrained.pt"
    torch.save({"model": model, "train_args": {"imgsz": 64}}, path)
    return path


def test_evaluate_prints_map_precision_and_recall(coco, untrained_weights, capsys):
    call_command("evaluate_detector", str(coco), weights=str(untrained_weights), match=r"^images/a")
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.startswith("6 images, 6 boxes: mAP@0.5 ")
    values = dict(zip(out.split()[4::2], map(float, out.split()[5::2])))
    assert set(values) == {"mAP@0.5", "mAP@0.5:0.95", "precision", "recall"}
    assert all(0.0 <= v <= 1.0 for v in values.values())


def test_evaluate_keeps_plots_when_asked(coco, untrained_weights, tmp_path):
    call_command("evaluate_detector", str(coco), weights=str(untrained_weights), out=str(tmp_path / "eval"))
    assert len(list((tmp_path / "eval" / "dataset" / "images" / "val").iterdir())) == 10
    assert any((tmp_path / "eval" / "val").glob("*.png"))


@pytest.mark.parametrize("weights, match, message", [
    ("missing.pt", None, r"missing.pt: weights file not found"),
    ("bad.pt", None, r"bad.pt: not a YOLO weights file"),
    ("good", "no-such-image", r"annotations.json: --match 'no-such-image' matches no image"),
])
def test_evaluate_refuses_in_one_line(coco, untrained_weights, tmp_path, weights, match, message):
    (tmp_path / "bad.pt").write_text(json.dumps({"not": "a checkpoint"}))
    path = untrained_weights if weights == "good" else tmp_path / weights
    with pytest.raises(CommandError, match=message) as error:
        call_command("evaluate_detector", str(coco), weights=str(path), match=match)
    assert "\n" not in str(error.value)
