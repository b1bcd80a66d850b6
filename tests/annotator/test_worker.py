"""Real Celery worker processes pre-label a frame, on the embedded filesystem broker and on Redis."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from celery import Celery
from django.db import connection

from annotator.models import Frame, Label, Prediction
from annotator.services.labels import Decision, record_labels
from inference.embedder import save_checkpoint
from tests.factories import BoxFactory, FrameFactory, ProductFactory, ShelfFactory

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = [((10, 20, 60, 100), 0), ((90, 20, 60, 100), 1)]

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def redis_url() -> str | None:
    url = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).flushdb()
    except redis.ConnectionError:
        return None
    return url


@pytest.fixture
def scene(tiny_embedder, tmp_path):
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    products = [ProductFactory(company=company, name="Red"), ProductFactory(company=company, name="Green")]
    labelled = FrameFactory(shelf=shelf, blocks=LAYOUT, checksum="a" * 64, status=Frame.Status.LABELLED)
    record_labels(decisions=[
        Decision(box=BoxFactory(frame=labelled, x=x, y=y, w=w, h=h), product=products[c], action=Label.Action.IMPORTED)
        for (x, y, w, h), c in LAYOUT
    ])
    incoming = FrameFactory(shelf=shelf, blocks=LAYOUT, checksum="b" * 64)
    boxes = [BoxFactory(frame=incoming, x=x, y=y, w=w, h=h) for (x, y, w, h), _ in LAYOUT]
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(tiny_embedder.model, tiny_embedder.config, checkpoint, name="tiny-worker")
    return {"incoming": incoming, "boxes": boxes, "products": products, "checkpoint": checkpoint}


def filesystem_broker(var_dir: Path) -> dict:
    """The embedded broker's settings for a worker whose VAR_DIR is ``var_dir`` (a queue of its own)."""
    folder = var_dir / "celery"
    return {
        "broker_url": "filesystem://localhost//",
        "result_backend": f"file://{folder / 'results'}",
        "transport_options": {
            "data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"), "control_folder": str(folder / "control"),
            "store_processed": False, "polling_interval": 0.1,
        },
    }


def run_worker_and_prelabel(scene, tmp_path, media_root, broker: dict) -> None:
    var_dir = tmp_path / "worker-var"
    for sub in ("queue", "processed", "control", "results"):
        (var_dir / "celery" / sub).mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "backend.settings",
        "VAR_DIR": str(var_dir),
        "DATABASE_URL": database_url(),
        "MEDIA_ROOT": str(media_root),
        "QDRANT_PATH": str(tmp_path / "qdrant"),
        "EMBEDDER_CHECKPOINT": str(scene["checkpoint"]),
        "REDIS_URL": broker.get("redis_url", ""),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "backend", "worker", "--pool", "solo", "-l", "warning",
         "--hostname", f"test-{os.getpid()}@localhost"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        producer = Celery("producer", broker=broker["broker_url"], backend=broker["result_backend"])
        producer.conf.broker_transport_options = broker.get("transport_options", {})
        result = producer.send_task("annotator.tasks.prelabel_frame", args=[scene["incoming"].pk])
        assert result.get(timeout=40) == scene["incoming"].pk
        if "ping" in broker:
            replies = producer.control.inspect(timeout=5).ping()
            assert replies and any(reply.get("ok") == "pong" for reply in replies.values())
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=30)
    scene["incoming"].refresh_from_db()
    assert scene["incoming"].status == Frame.Status.READY, output
    chosen = dict(Prediction.objects.filter(box__frame=scene["incoming"]).values_list("box_id", "product_id"))
    assert chosen == {box.pk: scene["products"][c].pk for box, (_, c) in zip(scene["boxes"], LAYOUT)}


def test_worker_on_the_embedded_filesystem_broker(scene, tmp_path, media_root):
    run_worker_and_prelabel(scene, tmp_path, media_root, {**filesystem_broker(tmp_path / "worker-var"), "ping": True})


def test_worker_on_redis(scene, tmp_path, media_root):
    url = redis_url()
    if url is None:
        pytest.skip("no Redis server reachable")
    run_worker_and_prelabel(scene, tmp_path, media_root, {
        "broker_url": url, "result_backend": url, "redis_url": url, "ping": True,
    })
