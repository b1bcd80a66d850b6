"""Real Celery worker processes for the tests: the scene they pre-label, their broker settings and
environment, and starting one."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from celery import Celery
from django.db import connection

from annotator.models import Frame, Label
from annotator.services.labels import Decision, record_labels
from inference.embedder import save_checkpoint
from tests.factories import BoxFactory, FrameFactory, ProductFactory, ShelfFactory

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = [((10, 20, 60, 100), 0), ((90, 20, 60, 100), 1)]


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
    """A labelled frame (its labels still in the outbox) and a queued frame of the same shelf whose
    boxes show the same products, with the tiny embedder saved for the worker."""
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


def redis_broker(url: str) -> dict:
    return {"broker_url": url, "result_backend": url, "redis_url": url}


def worker_env(scene, tmp_path: Path, media_root: Path, broker: dict, **extra: str) -> dict[str, str]:
    """A worker's environment: this test's database, media and broker, the scene's embedder."""
    var_dir = tmp_path / "worker-var"
    for sub in ("queue", "processed", "control", "results"):
        (var_dir / "celery" / sub).mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "backend.settings",
        "VAR_DIR": str(var_dir),
        "DATABASE_URL": database_url(),
        "MEDIA_ROOT": str(media_root),
        "QDRANT_PATH": str(tmp_path / "qdrant"),
        "EMBEDDER_CHECKPOINT": str(scene["checkpoint"]),
        "REDIS_URL": broker.get("redis_url", ""),
        # The scenes' made-up shelves are flat colour blocks, blurred by the gate's absolute measure.
        "QUALITY_GATE_ENABLED": "false",
        **extra,
    }


def start_worker(env: dict[str, str], *, name: str, pool: str = "solo", program: list[str] | None = None,
                 log: Path | None = None) -> subprocess.Popen:
    """``celery -A backend worker`` (or ``program`` given celery's arguments) in a session of its own,
    so the test can kill it and its pool together. Output goes to ``log``, else to a pipe."""
    command = [*(program or [sys.executable, "-m", "celery"]), "-A", "backend", "worker", "--pool", pool,
               "--concurrency", "1", "-l", "warning", "--hostname", f"{name}-{os.getpid()}@localhost"]
    output = log.open("w") if log else subprocess.PIPE
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def producer(broker: dict) -> Celery:
    """An app that only sends tasks to the broker and reads their results."""
    app = Celery("producer", broker=broker["broker_url"], backend=broker["result_backend"], set_as_current=False)
    app.conf.broker_transport_options = broker.get("transport_options", {})
    return app
