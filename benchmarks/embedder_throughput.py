"""Crops per second of an embedder in torch and in onnxruntime, side by side, preprocessing included.

Each timed run decodes JPEG bytes held in memory, preprocesses (the embedders' shared
``preprocess_crops``) and embeds one batch; the figure is the median over repeats after a warm-up.
Crops are GroceryStoreDataset test images where ``../shared/data`` has them, else drawn shelves.

    .venv/bin/python benchmarks/embedder_throughput.py [--checkpoint PATH] [--batch-sizes 64 32] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GROCERY_TEST = ROOT.parent / "shared" / "data" / "grocery-store" / "dataset" / "test"


def jpeg_crops(count: int) -> list[bytes]:
    files = sorted(GROCERY_TEST.rglob("*.jpg"))[:count] if GROCERY_TEST.is_dir() else []
    if len(files) >= count:
        return [f.read_bytes() for f in files]
    from tests.factories import shelf_image  # drawn crops when the data is absent

    return [shelf_image((120 + i % 40, 200), [((10, 10, 90, 170), i)]) for i in range(count)]


def crops_per_second(embedder, jpegs: list[bytes], repeats: int) -> float:
    from inference.images import open_image

    def once() -> float:
        started = time.perf_counter()
        embedder.embed([open_image(data) for data in jpegs])
        return time.perf_counter() - started

    once()  # warm-up
    return len(jpegs) / statistics.median(once() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="also measure this checkpoint (.pt)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 32])
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch

    from inference.embedder import load_embedder
    from inference.onnx_embedder import export_onnx, load_onnx_embedder

    torch.set_num_threads(args.threads)
    models = [("default", None)] + ([("checkpoint", args.checkpoint)] if args.checkpoint else [])
    print(f"{'embedder':<56} {'batch':>5} {'torch crops/s':>14} {'onnxruntime crops/s':>20} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as scratch:
        for label, checkpoint in models:
            torch_embedder = load_embedder(checkpoint)
            onnx_path = export_onnx(torch_embedder, Path(scratch) / f"{label}.onnx")
            for batch in args.batch_sizes:
                jpegs = jpeg_crops(batch)
                torch_embedder.batch_size = batch
                onnx_embedder = load_onnx_embedder(onnx_path, batch_size=batch, threads=args.threads)
                torch_rate = crops_per_second(torch_embedder, jpegs, args.repeats)
                onnx_rate = crops_per_second(onnx_embedder, jpegs, args.repeats)
                name = f"{torch_embedder.name} ({torch_embedder.config.input_size}px)"
                print(f"{name:<56} {batch:>5} {torch_rate:>14.1f} {onnx_rate:>20.1f} {onnx_rate / torch_rate:>5.2f}x",
                      flush=True)


if __name__ == "__main__":
    main()
