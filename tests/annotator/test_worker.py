"""Real Celery worker processes pre-label a frame, on the embedded filesystem broker and on Redis."""
from __future__ import annotations

import pytest

from annotator.models import Frame, Prediction
from tests.annotator.workers import (
    LAYOUT,
    filesystem_broker,
    producer,
    redis_broker,
    redis_url,
    scene,  # noqa: F401  (a fixture)
    start_worker,
    worker_env,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def run_worker_and_prelabel(scene, tmp_path, media_root, broker: dict) -> None:
    worker = start_worker(worker_env(scene, tmp_path, media_root, broker), name="test")
    try:
        sender = producer(broker)
        result = sender.send_task("annotator.tasks.prelabel_frame", args=[scene["incoming"].pk])
        assert result.get(timeout=40) == scene["incoming"].pk
        if "ping" in broker:
            replies = sender.control.inspect(timeout=5).ping()
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
    run_worker_and_prelabel(scene, tmp_path, media_root, {**redis_broker(url), "ping": True})
