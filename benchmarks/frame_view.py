"""The workspace's frame API with many boxes: latency and SQL queries, 10 boxes beside 150.

    .venv/bin/python benchmarks/frame_view.py [--boxes 10 150] [--requests 50] [--database-url URL]

Builds a throwaway database (SQLite in a temporary folder unless ``--database-url`` names another,
e.g. an empty PostgreSQL database), a company with a frame per box count, every box pre-labelled
with 10 candidates, and times ``GET /api/frames/<id>/`` as an annotator, through Django's test
client (the whole request: middleware, selectors, serializers, JSON). The query count must not grow
with the boxes; the ratio of latencies says what each box costs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, nargs="+", default=[10, 150])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--database-url", help="an empty database to use (default: SQLite in a temporary folder)")
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="frame-view-bench-")
    os.environ["VAR_DIR"] = scratch
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{scratch}/bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    from annotator.models import PipelineVersion, Prediction
    from tests.factories import BoxFactory, FrameFactory, ProductFactory, ShelfFactory, UserFactory

    setup_test_environment()
    settings.ALLOWED_HOSTS = ["testserver"]
    call_command("migrate", verbosity=0)
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    products = [ProductFactory(company=company) for _ in range(12)]
    version = PipelineVersion.objects.create(name="v2", config_digest="bench")
    user = UserFactory(company=company, role="annotator")
    client = Client()
    client.force_login(user)

    print(f"GET /api/frames/<id>/ as an annotator, {args.requests} requests each, "
          f"{connection.vendor} database")
    print(f"{'boxes':>5} {'queries':>7} {'p50 ms':>7} {'p99 ms':>7} {'KiB':>6}")
    rows = []
    for count in args.boxes:
        frame = FrameFactory(shelf=shelf, checksum=f"{count:064d}")
        for i in range(count):
            box = BoxFactory(frame=frame, x=(i % 30) * 10, y=(i // 30) * 30, w=9, h=28)
            candidates = [{"product_id": products[(i + k) % 12].pk, "score": 0.9 - 0.05 * k,
                           "components": {"knn": 0.9 - 0.05 * k, "knn_mean": 0.8, "knn_count": 3.0, "realgram": 0.05}}
                          for k in range(10)]
            Prediction.objects.create(box=box, pipeline_version=version, product=products[i % 12], score=0.9,
                                      candidates=candidates)
        url = f"/api/frames/{frame.pk}/"
        client.get(url)  # warm-up
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200, response.content[:200]
        query_count = len(queries)  # now: later requests reset the connection's query log
        times = []
        for _ in range(args.requests):
            started = time.perf_counter()
            client.get(url)
            times.append(1000 * (time.perf_counter() - started))
        p50, p99 = statistics.median(times), sorted(times)[max(0, int(0.99 * len(times)) - 1)]
        rows.append((count, query_count, p50))
        print(f"{count:5d} {query_count:7d} {p50:7.1f} {p99:7.1f} {len(response.content) / 1024:6.0f}", flush=True)
    (few, few_queries, few_ms), (many, many_queries, many_ms) = rows[0], rows[-1]
    print(f"{many} boxes vs {few}: {many_queries} vs {few_queries} queries, {many_ms / few_ms:.1f}x the latency "
          f"({(many_ms - few_ms) / (many - few):.2f} ms a box)")


if __name__ == "__main__":
    main()
