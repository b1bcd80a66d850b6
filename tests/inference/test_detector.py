"""The detector end to end, offline: convert a tiny synthetic set, train one epoch from
``yolov8n.yaml``, validate with plots, predict and export to ONNX, while every way out to the
network raises and is recorded. Nothing may be recorded."""
from __future__ import annotations

import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image, ImageDraw

from inference import ultralytics_offline
from inference.detector import Detection, YoloDetector
from inference.detector_training import (
    DetectionSample, TrainConfig, TrainResult, evaluate_detector, train_detector, write_yolo_dataset,
)
from inference.images import open_image

COLOURS = [(200, 40, 40), (40, 160, 60), (40, 60, 200), (220, 180, 30)]


class NetworkAttempt(RuntimeError):
    pass


@dataclass
class NetworkGuard:
    attempts: list[str] = field(default_factory=list)

    def block(self, what: str):
        def refuse(*args, **kwargs):
            self.attempts.append(f"{what} {args[1:] if what == 'socket.connect' else args}"[:200])
            raise NetworkAttempt(f"network access during an offline test: {what}")
        return refuse


@pytest.fixture(scope="module")
def network_guard() -> Iterator[NetworkGuard]:
    """For the whole module: TCP/UDP connects, DNS, urllib, requests and pip subprocesses raise."""
    guard = NetworkGuard()
    real_connect, real_popen_init = socket.socket.connect, subprocess.Popen.__init__

    def connect(sock, address, *args):
        if sock.family == socket.AF_UNIX:
            return real_connect(sock, address, *args)
        return guard.block("socket.connect")(sock, address)

    def popen_init(self, args, *rest, **kwargs):
        text = " ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args)
        if any(word in text for word in ("pip", "curl", "wget")):
            guard.block("subprocess")(text)
        return real_popen_init(self, args, *rest, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", guard.block("socket.connect_ex"))
        patch.setattr(socket, "create_connection", guard.block("socket.create_connection"))
        patch.setattr(socket, "getaddrinfo", guard.block("socket.getaddrinfo"))
        patch.setattr(urllib.request, "urlopen", guard.block("urllib.request.urlopen"))
        patch.setattr(requests.Session, "request", guard.block("requests.Session.request"))
        patch.setattr(subprocess.Popen, "__init__", popen_init)
        yield guard


def draw_frame(path: Path, rng: np.random.Generator) -> tuple[tuple[float, float, float, float], ...]:
    """A plain background with two or three coloured, outlined products; returns their boxes."""
    image = Image.new("RGB", (160, 160), (225, 220, 205))
    draw = ImageDraw.Draw(image)
    boxes = []
    for slot in rng.permutation(4)[: rng.integers(2, 4)]:
        x, y = 8 + 76 * (slot % 2) + rng.integers(0, 12), 8 + 76 * (slot // 2) + rng.integers(0, 12)
        w, h = rng.integers(40, 56), rng.integers(44, 60)
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=COLOURS[int(slot)], outline=(20, 20, 20), width=2)
        boxes.append((float(x), float(y), float(w), float(h)))
    image.save(path, "JPEG", quality=95)
    return tuple(boxes)


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> list[DetectionSample]:
    folder = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    out = []
    for index in range(6):
        path = folder / f"frame_{index}.jpg"
        out.append(DetectionSample(path, 160, 160, draw_frame(path, rng), name=f"frame_{index}.jpg"))
    return out


@pytest.fixture(scope="module")
def trained(network_guard, samples, tmp_path_factory) -> TrainResult:
    # Decides the ultralytics folders unless an earlier test of this process already did.
    ultralytics_offline.prepare(tmp_path_factory.mktemp("ultralytics-config"))
    root = tmp_path_factory.mktemp("training")
    dataset = write_yolo_dataset(samples, root / "dataset", lambda s: s.name in {"frame_4.jpg", "frame_5.jpg"})
    config = TrainConfig(epochs=1, imgsz=96, batch=4, workers=0, plots=True, verbose=False)
    return train_detector(dataset, root / "run", config)


def test_the_guard_records_and_blocks_connections(network_guard):
    before = len(network_guard.attempts)
    with pytest.raises(NetworkAttempt):
        socket.create_connection(("example.com", 443), timeout=1)
    with pytest.raises(NetworkAttempt):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(("127.0.0.1", 9))
    with pytest.raises(NetworkAttempt):
        requests.get("https://github.com")
    assert len(network_guard.attempts) == before + 3
    del network_guard.attempts[before:]


def test_training_writes_weights_metrics_and_plots_without_the_network(trained, network_guard):
    assert trained.best_weights.is_file() and trained.best_weights.name == "best.pt"
    assert 0.0 <= trained.map50_95 <= trained.map50 <= 1.0
    assert (trained.run_dir / "results.csv").is_file()
    # Plots drew text with the font prepared offline (ultralytics would fetch Arial.ttf otherwise).
    assert any(trained.run_dir.glob("*.png")), sorted(p.name for p in trained.run_dir.iterdir())
    assert (trained.run_dir / "val_batch0_labels.jpg").is_file()
    from ultralytics.utils import USER_CONFIG_DIR
    from ultralytics.utils.checks import check_font

    assert Path(check_font("Arial.ttf")) == Path(USER_CONFIG_DIR) / "Arial.ttf"
    assert network_guard.attempts == []


def test_evaluation_reports_map_precision_recall_with_plots(trained, samples, network_guard, tmp_path):
    result = evaluate_detector(trained.best_weights, samples[4:], work_dir=tmp_path, plots=True)
    assert (result.images, result.boxes) == (2, sum(len(s.boxes) for s in samples[4:]))
    assert all(0.0 <= value <= 1.0 for value in (result.map50, result.map50_95, result.precision, result.recall))
    assert result.map50 == pytest.approx(trained.map50, abs=1e-6)  # the same weights, images and size
    assert any((tmp_path / "val").glob("*.png"))
    assert network_guard.attempts == []


def test_the_detector_predicts_on_the_raw_pixel_grid(trained, samples, network_guard, monkeypatch):
    detector = YoloDetector(trained.best_weights, confidence=0.0, image_size=96, max_boxes=5)
    frame = open_image(samples[0].image_path.read_bytes()).crop((0, 0, 160, 120))  # not square: any turn shows
    seen = []
    predict = detector.model.predict
    monkeypatch.setattr(detector.model, "predict",
                        lambda source, **kw: seen.append((source, kw)) or predict(source, **kw))

    detections = detector.detect(frame)

    source, kwargs = seen[0]
    assert source.shape == (120, 160, 3)
    assert np.array_equal(source[:, :, ::-1], np.asarray(frame))  # BGR, as ultralytics wants numpy frames
    assert kwargs["device"] == "cpu" and kwargs["verbose"] is False
    assert 0 < len(detections) <= 5 and all(isinstance(d, Detection) for d in detections)
    for d in detections:
        assert d.w > 0 and d.h > 0 and -1 <= d.x and d.x + d.w <= 161 and -1 <= d.y and d.y + d.h <= 121
    assert network_guard.attempts == []


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_onnx_export_runs_offline(trained, network_guard, tmp_path):
    from ultralytics import YOLO

    weights = tmp_path / "best.pt"
    weights.write_bytes(trained.best_weights.read_bytes())
    exported = Path(YOLO(str(weights)).export(format="onnx", imgsz=96, device="cpu", simplify=False))
    assert exported.is_file() and exported.suffix == ".onnx"
    assert network_guard.attempts == []


def test_missing_weights_fail_before_ultralytics_is_asked(tmp_path):
    with pytest.raises(FileNotFoundError, match="detector weights not found"):
        YoloDetector(tmp_path / "missing.pt")


def test_loading_a_model_leaves_pillow_answering_unreadable_images_itself(tmp_path):
    """ultralytics replaces PIL.Image.open with a version that tries to install pi-heif; after
    load_model, an unreadable image is again Pillow's own error, and ours."""
    from PIL import Image, UnidentifiedImageError

    from inference.detector import load_model
    from inference.images import ImageError, open_image

    load_model("yolov8n.yaml")
    import io

    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(b"not an image"))
    with pytest.raises(ImageError):
        open_image(b"not an image")
