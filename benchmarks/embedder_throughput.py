"""Crops per second of an embedder in torch, onnxruntime fp32 and onnxruntime int8, side by side,
preprocessing included.

Each timed run decodes JPEG bytes held in memory, preprocesses (the embedders' shared
``preprocess_crops``) and embeds ``--crops`` crops in batches; the figure is the median over repeats
after a warm-up. Crops are GroceryStoreDataset test images where ``../shared/data`` has them, else
drawn shelves. The int8 model is statically quantized (QDQ, per-channel) from the fp32 export,
calibrated on ``--calibration`` other crops (``inference.onnx_embedder.quantize_onnx``); its column
also gives the lowest cosine between its embeddings and the fp32 ones.

    .venv/bin/python benchmarks/embedder_throughput.py [--checkpoint PATH] [--batch-sizes 64 32] [--threads 2]
        [--crops N] [--calibration 64] [--no-int8] [--json OUT]

``--json OUT`` also writes the rows, one per runtime and batch size, with the keys of
``benchmarks/search_latency.py``'s rows (engine, points: the crops embedded, filter: null, p50_ms and
p99_ms: per crop, recall_at_10: null, build_s: export and quantization time, crops_per_s) plus model,
batch and min_cosine_vs_fp32.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# ../shared from the main checkout, ../../shared from a worktree under wt/
GROCERY_TEST = next((base / "shared" / "data" / "grocery-store" / "dataset" / "test" for base in ROOT.parents[:2]
                     if (base / "shared" / "data" / "grocery-store").is_dir()),
                    ROOT.parent / "shared" / "data" / "grocery-store" / "dataset" / "test")


def jpeg_crops(count: int, skip: int = 0) -> list[bytes]:
    files = sorted(GROCERY_TEST.rglob("*.jpg"))[skip : skip + count] if GROCERY_TEST.is_dir() else []
    if len(files) >= count:
        return [f.read_bytes() for f in files]
    from tests.factories import shelf_image  # drawn crops when the data is absent

    return [shelf_image((120 + (skip + i) % 40, 200), [((10, 10, 90, 170), skip + i)]) for i in range(count)]


def decode(jpegs: list[bytes]) -> list:
    from inference.images import open_image

    return [open_image(data) for data in jpegs]


def timings(embedder, jpegs: list[bytes], repeats: int) -> np.ndarray:
    """Seconds per run (decode, preprocess, embed all of ``jpegs``), after one warm-up run."""

    def once() -> float:
        started = time.perf_counter()
        embedder.embed(decode(jpegs))
        return time.perf_counter() - started

    once()  # warm-up
    return np.array([once() for _ in range(repeats)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="also measure this checkpoint (.pt)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 32])
    parser.add_argument("--crops", type=int, help="crops embedded per timed run (default: one batch)")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calibration", type=int, default=64, help="crops the int8 model is calibrated on")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 quantized model")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the rows as a JSON list to OUT")
    args = parser.parse_args()

    import torch

    from inference.embedder import load_embedder
    from inference.onnx_embedder import export_onnx, load_onnx_embedder

    torch.set_num_threads(args.threads)
    models = [("default", None)] + ([("checkpoint", args.checkpoint)] if args.checkpoint else [])
    runtimes = ["torch fp32", "onnxruntime fp32"] + ([] if args.no_int8 else ["onnxruntime int8"])
    print(f"{'embedder':<44} {'batch':>5} {'crops':>5} " + " ".join(f"{r + ' crops/s':>24}" for r in runtimes)
          + (f" {'int8/fp32 ort':>13} {'min cos':>7}" if not args.no_int8 else ""))
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for label, checkpoint in models:
            torch_embedder = load_embedder(checkpoint)
            started = time.perf_counter()
            onnx_path = export_onnx(torch_embedder, Path(scratch) / f"{label}.onnx")
            build = {"torch fp32": None, "onnxruntime fp32": time.perf_counter() - started}
            int8_path = None
            if not args.no_int8:
                from inference.onnx_embedder import quantize_onnx

                started = time.perf_counter()
                int8_path = quantize_onnx(onnx_path, Path(scratch) / f"{label}.int8.onnx",
                                          decode(jpeg_crops(args.calibration, skip=2_000)))
                build["onnxruntime int8"] = build["onnxruntime fp32"] + time.perf_counter() - started
            name = f"{torch_embedder.name} ({torch_embedder.config.input_size}px)"
            for batch in args.batch_sizes:
                count = args.crops or batch
                jpegs = jpeg_crops(count)
                torch_embedder.batch_size = batch
                embedders = {"torch fp32": torch_embedder,
                             "onnxruntime fp32": load_onnx_embedder(onnx_path, batch_size=batch, threads=args.threads)}
                if int8_path:
                    embedders["onnxruntime int8"] = load_onnx_embedder(int8_path, batch_size=batch,
                                                                       threads=args.threads)
                rates, cosine = {}, None
                if int8_path:
                    fp32 = embedders["onnxruntime fp32"].embed(decode(jpegs))
                    int8 = embedders["onnxruntime int8"].embed(decode(jpegs))
                    cosine = float(np.min(np.sum(fp32 * int8, axis=1)))
                for runtime in runtimes:
                    seconds = timings(embedders[runtime], jpegs, args.repeats)
                    rates[runtime] = count / float(np.median(seconds))
                    per_crop = seconds / count * 1000
                    rows.append({
                        "engine": runtime, "points": count, "filter": None,
                        "p50_ms": round(float(np.percentile(per_crop, 50)), 3),
                        "p99_ms": round(float(np.percentile(per_crop, 99)), 3), "recall_at_10": None,
                        "build_s": None if build[runtime] is None else round(build[runtime], 2),
                        "crops_per_s": round(rates[runtime], 1), "model": name, "batch": batch,
                        "min_cosine_vs_fp32": round(cosine, 4) if runtime == "onnxruntime int8" else None,
                    })
                line = f"{name:<44} {batch:>5} {count:>5} " + " ".join(f"{rates[r]:>24.1f}" for r in runtimes)
                if int8_path:
                    line += f" {rates['onnxruntime int8'] / rates['onnxruntime fp32']:>12.2f}x {cosine:>7.3f}"
                print(line, flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
        print(f"{len(rows)} rows written to {args.json}")


if __name__ == "__main__":
    main()
