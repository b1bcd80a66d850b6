"""Faults, each injected for real, and how the system comes back: no label is lost, and every frame
ends pre-labelled once (one prediction per box) or failed with its reason.

- A worker killed mid-task (SIGKILL): its pool process alone (the task is rejected and delivered again
  at once); the whole worker on Redis (the task comes back after ``CELERY_VISIBILITY_TIMEOUT``); the
  whole worker on the filesystem broker (the message is gone: the stall sweep queues the frame again).
- The broker down (a closed port; a private redis-server stopped and started again): submits, retries
  and ingestion still answer, their labels and frames wait in the database, the worker reconnects by
  itself and the outbox is delivered.
- Qdrant unreachable (a closed port): labels wait in the outbox, pre-labelling retries and then fails
  visibly; both recover once it is back.
- An S3 object gone between the listing and its download, or truncated; a frame's image gone from media.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
import redis
from celery import Celery, current_app
from django.urls import reverse
from django.utils import timezone

from annotator import engines, tasks
from annotator.models import Frame, IngestedObject, Label, Prediction, SearchSpaceOutbox
from annotator.services import outbox, prelabel, prelabel_queue, search_index
from annotator.services.ingest import ingest_s3
from annotator.services.labels import Decision, record_labels
from inference.images import ImageError
from inference.pipeline import Pipeline, PipelineConfig
from inference.search_space import QdrantSearchSpace, connect_qdrant
from tests.annotator.test_ingest_s3 import (  # noqa: F401  (fixtures)
    CREDENTIALS,
    bucket,
    image,
    put,
    queued,
    run_command,
    s3,
    s3_endpoint,
)
from tests.annotator.test_workspace import annotator, ready_frame
from tests.annotator.workers import (  # noqa: F401  (scene is a fixture)
    LAYOUT,
    ROOT,
    filesystem_broker,
    producer,
    redis_broker,
    scene,
    start_worker,
    worker_env,
)
from tests.factories import BoxFactory, FrameFactory, ProductFactory, ShelfFactory, UserFactory

# Runs celery's own command line after making the first pre-labelling in the process stop midway
# (its frame processing) and say which process runs it, so the test knows what to kill and when.
STALLING_WORKER = [sys.executable, "-c", textwrap.dedent("""
    import os, sys, time
    from pathlib import Path

    import django

    django.setup()
    from annotator.services import prelabel

    marker, open_image = Path(os.environ["STALL_MARKER"]), prelabel.open_image

    def stall_once(data):
        if not marker.exists():
            marker.with_suffix(".tmp").write_text(str(os.getpid()))
            marker.with_suffix(".tmp").rename(marker)
            time.sleep(300)
        return open_image(data)

    prelabel.open_image = stall_once
    from celery.__main__ import main

    sys.argv[0] = "celery"
    main()
""")]


def free_port() -> int:
    """A port nothing listens on (the kernel's pick, released again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition: Callable[[], object], *, timeout: float, what: str, log: Path | None = None) -> object:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}" + (f"; worker log:\n{log.read_text()}" if log else ""))
        time.sleep(0.1)
    return value


def status_of(frame: Frame) -> str:
    return Frame.objects.values_list("status", flat=True).get(pk=frame.pk)


def assert_prelabelled_once(scene) -> None:
    frame = Frame.objects.get(pk=scene["incoming"].pk)
    assert frame.status == Frame.Status.READY, frame.status_reason
    predictions = Prediction.objects.filter(box__frame=frame)
    assert sorted(predictions.values_list("box_id", "product_id")) == sorted(
        (box.pk, scene["products"][c].pk) for box, (_, c) in zip(scene["boxes"], LAYOUT))
    assert predictions.values("pipeline_version").distinct().count() == 1
    assert frame.boxes.count() == len(LAYOUT)


def pending_outbox():
    return SearchSpaceOutbox.objects.filter(delivered_at__isnull=True)


def confirm_every_box(scene) -> dict:
    return {"boxes": [{"id": box.pk, "product_id": scene["products"][c].pk, "time_spent_ms": 500}
                      for box, (_, c) in zip(scene["boxes"], LAYOUT)]}


class PrivateRedis:
    """A redis-server of the test's own on a free port, without persistence: a restart empties it."""

    def __init__(self, folder: Path):
        self.port, self.folder, self.process = free_port(), folder, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.answers, timeout=10, what="redis-server")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def answers(self) -> bool:
        try:
            return redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
        except redis.ConnectionError:
            return False


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server binary")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.process.poll() is None:
        server.stop()


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen]]:
    """Worker processes a test starts; whatever is left of them is killed at the end."""
    started: list[subprocess.Popen] = []
    yield started
    for worker in started:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)


def celery_settings_with(tmp_path: Path, **env: str) -> dict:
    """backend/settings.py's Celery settings as a fresh process reads them from ``env`` (settings are
    read once, at import)."""
    script = ("import json, backend.settings as s\n"
              "print(json.dumps({k: v for k, v in vars(s).items() if k.startswith('CELERY_')}, default=str))")
    environ = {**os.environ, "VAR_DIR": str(tmp_path / "web-var"), **env}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environ, capture_output=True, text=True,
                            timeout=60, check=True)
    return json.loads(result.stdout)


@contextmanager
def sending_as_a_web_process(tmp_path: Path, redis_url: str) -> Iterator[None]:
    """Tasks this process sends (the on-commit sends of views and services) go as a web process
    started with ``REDIS_URL=redis_url`` sends them: broker and result store there."""
    from backend.celery import app

    web = Celery("web", set_as_current=False)
    web.config_from_object(SimpleNamespace(**celery_settings_with(tmp_path, REDIS_URL=redis_url)), namespace="CELERY")
    previous = current_app._get_current_object()
    web.set_current()  # the tasks are shared tasks: they send through the current app
    app.send_task = web.send_task  # services send by name through the project's app
    try:
        yield
    finally:
        del app.send_task
        previous.set_current()
        web.close()


# qdrant-client asks a server for its version on connecting, and warns when none answers.
unreachable_qdrant_warns = pytest.mark.filterwarnings("ignore:Failed to obtain server version")


def unreachable_qdrant(tiny_embedder) -> dict:
    """Engines whose search space is a Qdrant server on a port nothing listens on."""
    space = QdrantSearchSpace(connect_qdrant(url=f"http://127.0.0.1:{free_port()}"), "crops-tiny-test", tiny_embedder.dim)
    pipeline = Pipeline(tiny_embedder, space, PipelineConfig(version="v0-test", knn_neighbours=5, top_k=5))
    return {"embedder": tiny_embedder, "search_space": space, "pipeline": pipeline, "detector": None}


# ------------------------------------------------------------------ a worker killed mid-task


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_killed_pool_process_has_its_task_delivered_again(scene, tmp_path, media_root, workers):
    broker, marker, log = filesystem_broker(tmp_path / "worker-var"), tmp_path / "stalled", tmp_path / "worker.log"
    env = worker_env(scene, tmp_path, media_root, broker, EMBEDDER_RUNTIME="torch", STALL_MARKER=str(marker))
    workers.append(start_worker(env, name="prefork", pool="prefork", program=STALLING_WORKER, log=log))
    producer(broker).send_task("annotator.tasks.prelabel_frame", args=[scene["incoming"].pk])
    wait_for(marker.exists, timeout=60, what="the task to start", log=log)
    child = int(marker.read_text())
    assert child != workers[0].pid and status_of(scene["incoming"]) == Frame.Status.PROCESSING

    os.kill(child, signal.SIGKILL)

    # task_reject_on_worker_lost: the worker puts the message back and a fresh pool process runs it.
    wait_for(lambda: status_of(scene["incoming"]) == Frame.Status.READY, timeout=40, what="the frame", log=log)
    assert workers[0].poll() is None
    assert_prelabelled_once(scene)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_on_redis_has_its_task_back_after_the_visibility_timeout(
        scene, tmp_path, media_root, workers, private_redis):
    broker, marker, log = redis_broker(private_redis.url), tmp_path / "stalled", tmp_path / "doomed.log"
    env = worker_env(scene, tmp_path, media_root, broker, EMBEDDER_RUNTIME="torch", STALL_MARKER=str(marker),
                     CELERY_VISIBILITY_TIMEOUT="1")
    workers.append(start_worker(env, name="doomed", program=STALLING_WORKER, log=log))
    producer(broker).send_task("annotator.tasks.prelabel_frame", args=[scene["incoming"].pk])
    wait_for(marker.exists, timeout=60, what="the task to start", log=log)
    assert status_of(scene["incoming"]) == Frame.Status.PROCESSING

    os.killpg(workers[0].pid, signal.SIGKILL)
    workers[0].wait(timeout=10)

    # Unacknowledged, the message waits in Redis; a worker starting after the timeout takes it back.
    log = tmp_path / "rescuer.log"
    workers.append(start_worker(env, name="rescuer", log=log))
    wait_for(lambda: status_of(scene["incoming"]) == Frame.Status.READY, timeout=60, what="the frame", log=log)
    assert_prelabelled_once(scene)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_on_the_filesystem_broker_has_its_frame_queued_again_by_the_sweep(
        scene, tmp_path, media_root, workers):
    broker, marker, log = filesystem_broker(tmp_path / "worker-var"), tmp_path / "stalled", tmp_path / "doomed.log"
    env = worker_env(scene, tmp_path, media_root, broker, EMBEDDER_RUNTIME="torch", STALL_MARKER=str(marker),
                     PRELABEL_STALL_MINUTES="30")
    sender = producer(broker)
    workers.append(start_worker(env, name="doomed", program=STALLING_WORKER, log=log))
    sender.send_task("annotator.tasks.prelabel_frame", args=[scene["incoming"].pk])
    wait_for(marker.exists, timeout=60, what="the task to start", log=log)
    assert status_of(scene["incoming"]) == Frame.Status.PROCESSING

    os.killpg(workers[0].pid, signal.SIGKILL)
    workers[0].wait(timeout=10)

    # The transport deleted the message as it handed it over: there is nothing to deliver again.
    assert not list((tmp_path / "worker-var" / "celery" / "queue").iterdir())
    log = tmp_path / "rescuer.log"
    workers.append(start_worker(env, name="rescuer", log=log))
    Frame.objects.filter(pk=scene["incoming"].pk).update(prelabel_claimed_at=timezone.now() - timedelta(minutes=31))
    # What beat sends every few minutes.
    assert sender.send_task("annotator.tasks.requeue_stalled_frames").get(timeout=60) == [scene["incoming"].pk]
    wait_for(lambda: status_of(scene["incoming"]) == Frame.Status.READY, timeout=30, what="the frame", log=log)
    assert_prelabelled_once(scene)


@pytest.mark.django_db
def test_the_stall_sweep_queues_again_only_frames_left_queued_or_processing(queued, settings):
    long_ago = timezone.now() - timedelta(minutes=45)
    frames = {status: FrameFactory(status=status, checksum=str(i) * 64) for i, status in enumerate(Frame.Status.values)}
    recent = FrameFactory(status=Frame.Status.PROCESSING, checksum="r" * 64)
    # Claimed that long ago (by a run, or, without one, when its task could not be sent).
    Frame.objects.exclude(pk=recent.pk).update(updated_at=long_ago, prelabel_claimed_at=long_ago)

    swept = prelabel_queue.requeue_stalled_frames(older_than=timedelta(minutes=30))

    assert sorted(swept) == sorted(queued) == sorted([frames["queued"].pk, frames["processing"].pk])
    assert dict(Frame.objects.values_list("pk", "status")) == {
        **{frame.pk: status for status, frame in frames.items()}, frames["processing"].pk: "queued",
        recent.pk: "processing"}
    assert "not pre-labelled after 30 minutes" in Frame.objects.get(pk=frames["processing"].pk).status_reason
    # Each waits the stall time again before another sweep sends it once more.
    assert prelabel_queue.requeue_stalled_frames(older_than=timedelta(minutes=30)) == []
    entries = [entry for entry in settings.CELERY_BEAT_SCHEDULE.values() if entry["task"] == tasks.requeue_stalled_frames.name]
    assert len(entries) == 1


# ------------------------------------------------------------------ the broker down


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_a_submit_and_a_retry_still_answer_and_keep_their_work(client, tmp_path):
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    products = [ProductFactory(company=company) for _ in range(3)]
    frame = ready_frame(shelf, products)
    failed = FrameFactory(shelf=shelf, status=Frame.Status.FAILED, status_reason="boom", checksum="f" * 64)
    client.force_login(annotator(company))
    answers = {"boxes": [{"id": box.pk, "product_id": products[i].pk} for i, box in enumerate(frame.boxes.order_by("pk"))]}
    with sending_as_a_web_process(tmp_path, f"redis://127.0.0.1:{free_port()}/0"):
        assert client.post(f"/api/frames/{frame.pk}/lease/").status_code == 200
        started = time.monotonic()
        # Each sends its task once committed, from inside the request, as in production.
        submitted = client.post(f"/api/frames/{frame.pk}/submit/", answers, content_type="application/json")
        retried = client.post(reverse("annotator:frame-retry", args=[failed.pk]))
        elapsed = time.monotonic() - started

    assert submitted.status_code == 200, submitted.content
    assert retried.status_code == 302
    assert elapsed < 10  # not celery's default 20 reconnects to the result store per send
    assert Label.objects.filter(box__frame=frame, is_current=True).count() == 3
    assert pending_outbox().count() == 3  # for the beat sweep
    assert status_of(failed) == Frame.Status.QUEUED  # for the stall sweep


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_redis_restart_loses_no_label_and_the_worker_reconnects(
        scene, tmp_path, media_root, workers, private_redis, client):
    broker, log = redis_broker(private_redis.url), tmp_path / "worker.log"
    workers.append(start_worker(worker_env(scene, tmp_path, media_root, broker, EMBEDDER_RUNTIME="torch"),
                                name="steady", log=log))
    incoming = scene["incoming"]
    assert producer(broker).send_task("annotator.tasks.prelabel_frame", args=[incoming.pk]).get(timeout=60) == incoming.pk
    assert not pending_outbox().exists()
    client.force_login(annotator(incoming.company))

    private_redis.stop()
    with sending_as_a_web_process(tmp_path, private_redis.url):
        assert client.post(f"/api/frames/{incoming.pk}/lease/").status_code == 200
        response = client.post(f"/api/frames/{incoming.pk}/submit/", confirm_every_box(scene),
                               content_type="application/json")
        assert response.status_code == 200, response.content
        assert Label.objects.filter(box__frame=incoming, is_current=True).count() == len(LAYOUT)
        assert pending_outbox().count() == len(LAYOUT)

        private_redis.start()  # the same port, empty
        # The worker reconnects by itself and takes the delivery this process sends now.
        outbox.queue_delivery()
        wait_for(lambda: not pending_outbox().exists(), timeout=60, what="the outbox delivery", log=log)
    assert workers[0].poll() is None


# ------------------------------------------------------------------ Qdrant unreachable


@unreachable_qdrant_warns
@pytest.mark.django_db
def test_labels_wait_in_the_outbox_while_qdrant_is_down(tiny_embedder, search_space):
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    product = ProductFactory(company=company)
    frame = FrameFactory(shelf=shelf, blocks=LAYOUT, checksum="a" * 64)
    boxes = [BoxFactory(frame=frame, x=x, y=y, w=w, h=h) for (x, y, w, h), _ in LAYOUT]
    record_labels(decisions=[Decision(box=box, product=product, action=Label.Action.CONFIRMED) for box in boxes])

    with engines.override(**unreachable_qdrant(tiny_embedder)):
        for _ in range(2):  # the delivery after the submit, then the beat sweep's
            with pytest.raises(Exception, match="onnection refused"):
                search_index.deliver_outbox()
    assert [(row.attempts, "onnection refused" in row.last_error) for row in pending_outbox()] == [(2, True)] * len(boxes)

    with engines.override(embedder=tiny_embedder, search_space=search_space):
        assert search_index.deliver_outbox() == len(boxes)
    assert not pending_outbox().exists()
    assert search_space.count(company_id=company.pk) == len(boxes)
    assert Label.objects.filter(box__frame=frame, is_current=True, product=product).count() == len(boxes)


@unreachable_qdrant_warns
@pytest.mark.django_db
def test_prelabelling_while_qdrant_is_down_retries_then_fails_visibly_and_recovers(tiny_embedder, search_space,
                                                                                   scene):
    incoming = scene["incoming"]
    with engines.override(**unreachable_qdrant(tiny_embedder)):
        result = tasks.prelabel_frame.apply(args=[incoming.pk])  # retries run at once when applied in-process
    assert result.failed()
    # Each run first delivers the outbox: one attempt per run, the first and its three retries.
    assert set(SearchSpaceOutbox.objects.values_list("attempts", flat=True)) == {4}
    incoming.refresh_from_db()
    assert incoming.status == Frame.Status.FAILED and "onnection refused" in incoming.status_reason

    pipeline = Pipeline(tiny_embedder, search_space, PipelineConfig(version="v0-test", knn_neighbours=5, top_k=5))
    with engines.override(embedder=tiny_embedder, search_space=search_space, pipeline=pipeline, detector=None):
        assert prelabel_queue.retry_frame(frame=incoming)  # the frame list's retry button
        assert tasks.prelabel_frame.apply(args=[incoming.pk]).get() == incoming.pk
    assert_prelabelled_once(scene)
    assert not pending_outbox().exists()


# ------------------------------------------------------------------ S3 objects and media files


def vanish_on_first_download(s3, bucket: str, key: str) -> None:
    """Delete ``key`` from the bucket just before ``s3`` first downloads it: listed, then gone."""
    deleter = boto3.client("s3", endpoint_url=s3.meta.endpoint_url, **CREDENTIALS)
    gone: list[str] = []

    def delete(params, **kwargs):
        if params["Key"] == key and not gone:
            deleter.delete_object(Bucket=bucket, Key=key)
            gone.append(key)

    s3.meta.events.register("before-parameter-build.s3.GetObject", delete)


@pytest.mark.django_db
def test_an_object_gone_before_its_download_is_reported_and_tried_again(s3, bucket, monkeypatch):
    whole, vanishing, truncated = (f"acme/s1/cam-1/20240101T10{minute}00.jpg" for minute in ("00", "05", "10"))
    put(s3, bucket, whole, image(1))
    put(s3, bucket, vanishing, image(2))
    put(s3, bucket, truncated, image(3)[:600])
    vanish_on_first_download(s3, bucket, vanishing)
    monkeypatch.setattr(engines, "s3_client", lambda endpoint_url=None: s3)

    out, err = run_command("--bucket", bucket, "--no-queue")

    assert f"s3://{bucket}/{vanishing}: listed but gone" in err
    assert f"s3://{bucket}/{truncated}: not a readable image" in err
    assert "1 new frames registered" in out  # the poll went on past both
    assert not IngestedObject.objects.filter(source_uri=f"s3://{bucket}/{vanishing}").exists()
    # The camera's upload lands again, and the truncated frame is uploaded whole.
    put(s3, bucket, vanishing, image(2))
    put(s3, bucket, truncated, image(3))
    report = ingest_s3(client=s3, bucket=bucket)
    assert (report.missing, report.unreadable, len(report.registered)) == ([], [], 2)
    assert Frame.objects.count() == 3


@pytest.mark.django_db
def test_a_frame_whose_image_vanished_from_media_fails_once_with_its_reason(test_engines, monkeypatch, client):
    frame = FrameFactory(blocks=LAYOUT, checksum="9" * 64)
    box = BoxFactory(frame=frame)
    frame.image.storage.delete(frame.image.name)
    runs: list[int] = []
    real = prelabel.prelabel_frame

    def counted(*, frame_id: int, **options) -> Frame:
        runs.append(frame_id)
        return real(frame_id=frame_id, **options)

    monkeypatch.setattr(prelabel, "prelabel_frame", counted)

    result = tasks.prelabel_frame.apply(args=[frame.pk])

    assert result.failed() and isinstance(result.result, ImageError)
    assert runs == [frame.pk]  # not retried: the file does not come back by itself
    frame.refresh_from_db()
    assert frame.status == Frame.Status.FAILED
    assert f"the image {frame.image.name} is missing from media storage" in frame.status_reason
    # The review grid's thumbnail of one of its boxes is a 404, not a server error.
    client.force_login(UserFactory(company=frame.company, role="qa_lead"))
    assert client.get(reverse("annotator:box-crop", args=[box.pk])).status_code == 404
