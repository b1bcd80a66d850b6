"""Search latency and recall of the embedded search-space engines, side by side in one run.

    .venv/bin/python benchmarks/search_latency.py [--points 100000] [--dim 512] [--queries 200]
        [--local-points 5000] [--no-hnsw] [--json OUT]

``--json OUT`` also writes the table's rows to OUT, one object per engine and filter with the keys
``ROW_KEYS``: engine, points, filter ("company" or "store"), p50_ms, p99_ms, recall_at_10, build_s
(seconds to insert and, for the HNSW engines, build the graph; null where not measured) and
crops_per_s (points inserted per second, graph build included).

Engines, all through the one ``SearchSpace`` interface the pipeline uses:
- numpy exact (``ExactSearchSpace``): the replay's engine, the reference for recall;
- Qdrant Edge (``EdgeSearchSpace``) as written (plain segments, scanned by Qdrant's engine);
- Qdrant Edge after ``optimize()`` (HNSW graph; its build time is printed), then the same with
  int8 scalar quantization (rescored, oversampling 2);
- qdrant-client's local mode (``QdrantSearchSpace`` on a folder) at ``--local-points`` only: it is
  exact search in Python and answers in seconds at 100k points.

Points carry a company (10 companies, the largest 40% of the points) and a store (5 per company);
queries are filtered by the largest company, then by one of its stores, one query per call (a frame
batches its boxes, but latency per query is the figure to compare), top 10. Vectors are clustered
(as crops of products are) rather than uniform noise, for which recall figures mean little.
Ratios measured in one run are the figures to read: absolute times on a shared machine are noisy.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.search_space import (  # noqa: E402
    CropPoint,
    EdgeSearchSpace,
    ExactSearchSpace,
    QdrantSearchSpace,
    connect_qdrant,
)

WHEN = datetime(2024, 1, 1, tzinfo=UTC)
ROW_KEYS = ("engine", "points", "filter", "p50_ms", "p99_ms", "recall_at_10", "build_s", "crops_per_s")
FILTERS = (("company", {"company_id": 1}), ("store", {"company_id": 1, "store_id": 10}))


def make_points(count: int, dim: int, rng: np.random.Generator) -> list[CropPoint]:
    products = max(count // 100, 10)
    centres = rng.normal(size=(products, dim)).astype(np.float32)
    product = rng.integers(0, products, count)
    vectors = centres[product] + 0.6 * rng.normal(size=(count, dim)).astype(np.float32)
    shares = np.array([0.4] + [0.6 / 9] * 9)
    company = rng.choice(10, size=count, p=shares) + 1
    store = company * 10 + rng.integers(0, 5, count)
    return [CropPoint(i + 1, vectors[i], int(product[i]), 1, int(company[i]), int(store[i]), 1, None, WHEN)
            for i in range(count)]


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def timed_queries(space, queries: np.ndarray, **filters) -> tuple[list[list[int]], np.ndarray]:
    ids, times = [], []
    for query in queries:
        start = time.perf_counter()
        [hits] = space.search(query[None], limit=10, **filters)
        times.append(time.perf_counter() - start)
        ids.append([h.box_id for h in hits])
    return ids, np.array(times) * 1000


def recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / max(len(t), 1) for f, t in zip(found, truth)]))


def report(name: str, space, queries, truth: dict, extra: str = "", *, points: int,
           build_s: float | None = None) -> list[dict]:
    """Print one table line for ``space`` and return its rows (one per filter, keys ``ROW_KEYS``)."""
    cells, rows = [], []
    for label, filters in FILTERS:
        ids, ms = timed_queries(space, queries, **filters)
        row = {"engine": name, "points": points, "filter": label,
               "p50_ms": round(float(np.percentile(ms, 50)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4),
               "recall_at_10": round(recall(ids, truth[label]), 4),
               "build_s": None if build_s is None else round(build_s, 3),
               "crops_per_s": None if not build_s else round(points / build_s, 1)}
        rows.append(row)
        cells.append(f"{label} p50 {row['p50_ms']:8.2f} ms p99 {row['p99_ms']:8.2f} ms "
                     f"recall@10 {row['recall_at_10']:.3f}")
    print(f"{name:34s} " + " | ".join(cells) + (f" | {extra}" if extra else ""), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--local-points", type=int, default=5_000, help="points for qdrant-client's local mode (0: skip)")
    parser.add_argument("--no-hnsw", action="store_true", help="skip building Qdrant Edge's HNSW graph")
    parser.add_argument("--no-edge", action="store_true", help="skip Qdrant Edge altogether")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the rows as a JSON list to OUT")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    points = make_points(args.points, args.dim, rng)
    queries = np.stack([points[i].vector for i in rng.integers(0, len(points), args.queries)])
    queries = queries + 0.3 * rng.normal(size=queries.shape).astype(np.float32)
    work = Path(tempfile.mkdtemp(prefix="search-bench-"))
    print(f"{args.points:,} points of {args.dim} dims, {args.queries} queries, top 10, one query per call")
    try:
        exact = ExactSearchSpace(args.dim)
        start = time.perf_counter()
        exact.upsert(points)
        insert = time.perf_counter() - start
        truth = {label: timed_queries(exact, queries, **filters)[0] for label, filters in FILTERS}
        rows = report("numpy exact", exact, queries, truth,
                      f"insert {insert:.1f} s, {exact.nbytes / 2**20:,.0f} MiB of vectors in memory",
                      points=args.points, build_s=insert)

        if args.no_edge:
            args.no_hnsw = True
        edge = EdgeSearchSpace(work / "edge", "crops-bench", args.dim)
        start = time.perf_counter()
        if not args.no_edge:
            edge.upsert(points)
            edge._shard.flush()
            insert = time.perf_counter() - start
            rows += report("qdrant-edge, plain segments", edge, queries, truth,
                           f"insert {insert:.1f} s, {folder_size(edge.path) / 2**20:,.0f} MiB on disk",
                           points=args.points, build_s=insert)
        if not args.no_hnsw:
            start = time.perf_counter()
            edge.flush()
            build = time.perf_counter() - start
            rows += report("qdrant-edge, HNSW (m 16, ef 128)", edge, queries, truth,
                           f"index build {build:.1f} s, {edge.indexed_count():,} indexed, "
                           f"{folder_size(edge.path) / 2**20:,.0f} MiB on disk",
                           points=args.points, build_s=insert + build)
        edge.close()
        if not args.no_hnsw:
            quantized = EdgeSearchSpace(work / "edge-int8", "crops-bench", args.dim, quantize=True)
            start = time.perf_counter()
            quantized.upsert(points)
            insert = time.perf_counter() - start
            start = time.perf_counter()
            quantized.flush()
            build = time.perf_counter() - start
            rows += report("qdrant-edge, HNSW + int8 quantized", quantized, queries, truth,
                           f"index build {build:.1f} s, int8 vectors {args.points * args.dim / 2**20:,.0f} MiB "
                           f"in RAM (float32: {args.points * args.dim * 4 / 2**20:,.0f} MiB)",
                           points=args.points, build_s=insert + build)
            quantized.close()

        if args.local_points:
            subset = points[: args.local_points]
            small_exact = ExactSearchSpace(args.dim)
            small_exact.upsert(subset)
            few = queries[: min(20, len(queries))]
            small_truth = {label: timed_queries(small_exact, few, **filters)[0] for label, filters in FILTERS}
            local = QdrantSearchSpace(connect_qdrant(path=work / "local"), "crops-bench", args.dim)
            start = time.perf_counter()
            local.upsert(subset)
            insert = time.perf_counter() - start
            rows += report("qdrant-client local", local, few, small_truth,
                           f"{args.local_points:,} pts, insert {insert:.1f} s",
                           points=args.local_points, build_s=insert)
            rows += report("numpy exact", small_exact, few, small_truth, f"{args.local_points:,} pts",
                           points=args.local_points)
            local.client.close()
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
            print(f"{len(rows)} rows written to {args.json}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
