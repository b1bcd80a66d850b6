"""Pre-labelling throughput of one CPU worker: frames per minute and crops per second, side by side.

    .venv/bin/python benchmarks/prelabel_throughput.py [--frames 12] [--boxes 40] [--threads 2] [--imgsz 640]

One run measures, on the same frames, what the worker does per frame: decode the JPEG, (detect),
crop and embed every box in one batch, search the crops in one batched query (Qdrant Edge, the
embedded default, holding the shelf's earlier annotations), then realgram and tracking (v2):
- embedder in torch vs onnxruntime (the app's default);
- without detection (the frame arrives with its boxes) vs with it (YOLOv8n at ``--imgsz``, built
  from its yaml: untrained weights predict as fast as trained ones, and nothing is downloaded).
Frames are the demo store's (drawn shelves of real product photos, 1024 x 576), each box list
topped up to ``--boxes`` with half-facings. Ratios from one run are the figures to read.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.images import open_image  # noqa: E402
from inference.pipeline import FrameContext, Pipeline, PipelineConfig, normalise_boxes  # noqa: E402
from inference.realgram import ShelfHistory  # noqa: E402
from inference.search_space import CropPoint, EdgeSearchSpace  # noqa: E402
from inference.tracking import PreviousFrame  # noqa: E402


def demo_frames(folder: Path, count: int, boxes: int) -> list[tuple[bytes, np.ndarray]]:
    from demo.compose import compose

    composed = compose(folder, days=2, frames_per_camera=max(4, count // 3 + 1))
    by_image: dict[int, list] = {}
    for annotation in composed.coco["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation["bbox"])
    frames = []
    for image in composed.coco["images"][:count]:
        facing = np.array(by_image.get(image["id"], []), np.float64).reshape(-1, 4)
        left = facing * [1, 1, 0.5, 1]
        right = left + facing[:, 2:3] * [0.5, 0, 0, 0]
        rows = np.vstack([facing, left, right])[:boxes]
        frames.append(((folder / image["file_name"]).read_bytes(), rows))
    return frames


def untrained_detector(folder: Path, imgsz: int):
    from inference.detector import YoloDetector, load_model

    weights = folder / "yolov8n-untrained.pt"
    load_model("yolov8n.yaml").save(str(weights))
    return YoloDetector(weights, confidence=0.25, image_size=imgsz)


def seeded_space(folder: Path, dim: int, rng: np.random.Generator) -> EdgeSearchSpace:
    space = EdgeSearchSpace(folder / "edge", "crops-bench", dim)
    vectors = rng.normal(size=(20_000, dim)).astype(np.float32)
    when = datetime(2024, 1, 1, tzinfo=UTC)
    space.upsert([CropPoint(i + 1, v, int(i % 200), 1, 1, 1, 1, None, when) for i, v in enumerate(vectors)])
    return space


def per_frame(pipeline: Pipeline, frames, detector, repeats: int) -> float:
    """Median seconds per frame over ``repeats`` passes (after a warm-up pass)."""
    history = ShelfHistory.from_rows([(i % 200, (0.1 * (i % 9), 0.3 * (i % 3), 0.1, 0.3), 0.0, i % 5)
                                      for i in range(200)])

    def one_pass() -> float:
        started = time.perf_counter()
        previous = None
        for moment, (data, boxes) in enumerate(frames, start=1):
            image = open_image(data)
            if detector is not None:
                detector.detect(image)  # timed; the frame's known boxes are classified either way
            context = FrameContext(1, 1, 1, image.width, image.height, captured_at=3600.0 * moment)
            vectors = pipeline.embed_boxes(image, [tuple(b) for b in boxes])
            pipeline.rank(vectors, [tuple(b) for b in boxes], context, history, previous)
            previous = PreviousFrame(normalise_boxes(boxes, image.width, image.height), vectors,
                                     np.arange(len(boxes)), np.zeros(len(boxes), bool), context.captured_at)
        return (time.perf_counter() - started) / len(frames)

    one_pass()
    return statistics.median(one_pass() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--boxes", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from inference.embedder import load_embedder
    from inference.onnx_embedder import export_onnx, load_onnx_embedder

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        frames = demo_frames(folder / "demo", args.frames, args.boxes)
        boxes = int(np.mean([len(b) for _, b in frames]))
        torch_embedder = load_embedder(None)
        onnx_embedder = load_onnx_embedder(export_onnx(torch_embedder, folder / "embedder.onnx"), threads=args.threads)
        space = seeded_space(folder, torch_embedder.dim, rng)
        detector = untrained_detector(folder, args.imgsz)
        config = PipelineConfig.named("v2")
        print(f"{len(frames)} frames of {boxes} boxes, v2 (kNN over 20,000 points in Qdrant Edge + realgram + "
              f"tracking), {args.threads} threads")
        print(f"{'embedder':12} {'detection':>9} {'ms/frame':>9} {'frames/min':>10} {'crops/s':>8}")
        results = {}
        for name, embedder in (("torch", torch_embedder), ("onnxruntime", onnx_embedder)):
            pipeline = Pipeline(embedder, space, config)
            for detect in (False, True):
                seconds = per_frame(pipeline, frames, detector if detect else None, args.repeats)
                results[(name, detect)] = seconds
                print(f"{name:12} {'yes' if detect else 'no':>9} {1000 * seconds:9.0f} {60 / seconds:10.1f} "
                      f"{boxes / seconds:8.1f}", flush=True)
        space.close()
        print(f"onnxruntime / torch, without detection: {results[('torch', False)] / results[('onnxruntime', False)]:.2f}x; "
              f"detection costs {1000 * (results[('onnxruntime', True)] - results[('onnxruntime', False)]):.0f} ms a frame")


if __name__ == "__main__":
    main()
