"""S3 ingestion of camera frames, through boto3 against a real S3 endpoint (moto's server on loopback).

Key convention: ``<company>/<store>/<camera>/<YYYYmmddTHHMMSS>.jpg``; the camera sees one shelf, named after it.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from moto.server import ThreadedMotoServer

from annotator.models import Camera, Company, Frame, IngestedObject, Shelf, Store
from annotator.services.ingest import ingest_s3
from annotator.tasks import ingest_s3_frames
from tests.celery_sends import prelabel_sent_to
from tests.factories import ShelfFactory, shelf_image

REPO_ROOT = Path(__file__).resolve().parents[2]
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint() -> str:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    # Nothing from the machine's AWS configuration may steer the clients under test.
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    return boto3.client("s3", endpoint_url=s3_endpoint, **CREDENTIALS)


@pytest.fixture
def bucket(s3) -> str:
    """A fresh bucket per test: the moto server lives for the module."""
    name = f"frames-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_settings(settings, s3_endpoint):
    """Settings as the management command and the Celery task read them (via ``engines.s3_client``)."""
    settings.AWS_ACCESS_KEY_ID = CREDENTIALS["aws_access_key_id"]
    settings.AWS_SECRET_ACCESS_KEY = CREDENTIALS["aws_secret_access_key"]
    settings.AWS_S3_REGION_NAME = CREDENTIALS["region_name"]
    settings.AWS_S3_ENDPOINT_URL = None
    settings.INGEST_S3_ENDPOINT_URL = s3_endpoint
    return settings


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    """Frame ids sent for pre-labelling (no broker involved)."""
    calls: list[int] = []
    monkeypatch.setattr("backend.celery.app.send_task", prelabel_sent_to(calls.append))
    return calls


def image(seed: int) -> bytes:
    """Distinct JPEG bytes per seed."""
    return shelf_image((320, 160), [((10 + 7 * seed, 20, 40, 60), seed), ((200, 30, 50, 80), seed + 1)])


def put(s3, bucket: str, key: str, data: bytes) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=data)


def frame_at(bucket: str, key: str) -> Frame:
    return Frame.objects.select_related("company", "camera__store", "shelf").get(source_uri=f"s3://{bucket}/{key}")


def run_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("ingest_s3", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# ------------------------------------------------------------------ registering


@pytest.mark.django_db
def test_new_objects_become_frames_with_their_origin(s3, bucket):
    put(s3, bucket, "acme/store-7/cam-2/20240315T081502.jpg", image(1))
    put(s3, bucket, "acme/store-7/cam-3/20240316T235959.jpg", image(2))
    put(s3, bucket, "globex/north/entrance/20231231T000000.jpg", image(3))

    report = ingest_s3(client=s3, bucket=bucket)

    assert len(report.registered) == 3 and report.already_known == 0
    assert report.ignored_keys == [] and report.unreadable == []
    assert sorted(report.registered) == sorted(Frame.objects.values_list("pk", flat=True))

    frame = frame_at(bucket, "acme/store-7/cam-2/20240315T081502.jpg")
    assert frame.company.name == "acme"
    assert frame.camera.store.code == "store-7"
    assert frame.camera.store.company == frame.company
    assert frame.camera.code == "cam-2"
    assert frame.shelf.camera == frame.camera and frame.shelf.code == "cam-2"
    assert frame.captured_at == datetime(2024, 3, 15, 8, 15, 2, tzinfo=UTC)
    assert frame.captured_at.utcoffset().total_seconds() == 0
    assert (frame.width, frame.height) == (320, 160)
    assert frame.status == Frame.Status.QUEUED
    with frame.image.open("rb") as handle:
        assert handle.read() == image(1)

    other = frame_at(bucket, "globex/north/entrance/20231231T000000.jpg")
    assert other.captured_at == datetime(2023, 12, 31, 0, 0, 0, tzinfo=UTC)
    assert other.company.name == "globex" and other.camera.store.code == "north"

    # One store for acme with two cameras, each seeing its own shelf.
    assert Company.objects.count() == 2
    assert Store.objects.filter(company__name="acme").count() == 1
    assert set(Camera.objects.filter(store__code="store-7").values_list("code", flat=True)) == {"cam-2", "cam-3"}
    assert Shelf.objects.count() == 3


@pytest.mark.django_db
def test_frames_join_existing_locations(s3, bucket):
    put(s3, bucket, "acme/s1/cam-1/20240101T100000.jpg", image(1))
    ingest_s3(client=s3, bucket=bucket)
    put(s3, bucket, "acme/s1/cam-1/20240101T110000.jpg", image(2))
    ingest_s3(client=s3, bucket=bucket)

    first = frame_at(bucket, "acme/s1/cam-1/20240101T100000.jpg")
    second = frame_at(bucket, "acme/s1/cam-1/20240101T110000.jpg")
    assert first.pk != second.pk
    assert second.shelf_id == first.shelf_id and second.camera_id == first.camera_id
    assert (Company.objects.count(), Store.objects.count(), Camera.objects.count(), Shelf.objects.count()) == (
        1, 1, 1, 1)


@pytest.mark.django_db
def test_png_and_upper_case_extensions_follow_the_convention(s3, bucket):
    put(s3, bucket, "acme/s1/cam-1/20240101T100000.JPG", image(1))
    put(s3, bucket, "acme/s1/cam-1/20240101T100500.png", shelf_image((64, 48), fmt="PNG"))

    report = ingest_s3(client=s3, bucket=bucket)

    assert len(report.registered) == 2 and report.ignored_keys == []
    assert frame_at(bucket, "acme/s1/cam-1/20240101T100500.png").width == 64


# ------------------------------------------------------------------ idempotence


@pytest.mark.django_db
def test_the_same_object_ingested_twice_is_one_frame(s3, bucket):
    put(s3, bucket, "acme/s1/cam-1/20240101T100000.jpg", image(1))
    put(s3, bucket, "acme/s1/cam-1/20240101T101000.jpg", image(2))

    first = ingest_s3(client=s3, bucket=bucket)
    again = ingest_s3(client=s3, bucket=bucket)

    assert len(first.registered) == 2
    assert again.registered == [] and again.already_known == 2
    assert Frame.objects.count() == 2


@pytest.mark.django_db
def test_the_same_object_through_the_command_is_one_frame(s3, bucket, s3_settings, s3_endpoint):
    put(s3, bucket, "acme/s1/cam-1/20240101T100000.jpg", image(1))
    settings = s3_settings
    settings.INGEST_S3_ENDPOINT_URL = None  # the command's endpoint comes from --endpoint-url

    out, err = run_command("--bucket", bucket, "--endpoint-url", s3_endpoint, "--no-queue")
    assert "1 new frames registered, 0 already known" in out
    assert err == ""
    ids = list(Frame.objects.values_list("pk", flat=True))

    ingest_s3(client=s3, bucket=bucket)  # the service sees what the command registered
    out, _ = run_command("--bucket", bucket, "--endpoint-url", s3_endpoint, "--no-queue")
    assert "0 new frames registered, 1 already known" in out
    assert list(Frame.objects.values_list("pk", flat=True)) == ids


@pytest.mark.django_db
def test_the_command_uses_the_configured_endpoint_without_the_option(s3, bucket, s3_settings, s3_endpoint):
    put(s3, bucket, "acme/s1/cam-1/20240101T100000.jpg", image(1))
    s3_settings.AWS_S3_ENDPOINT_URL = s3_endpoint

    out, _ = run_command("--bucket", bucket, "--no-queue")

    assert "1 new frames registered" in out
    assert Frame.objects.count() == 1


@pytest.mark.django_db
def test_the_same_image_under_two_keys_is_one_frame(s3, bucket):
    data = image(1)
    put(s3, bucket, "acme/s1/cam-1/20240101T100000.jpg", data)
    put(s3, bucket, "acme/s1/cam-1/20240101T100001.jpg", data)

    report = ingest_s3(client=s3, bucket=bucket)

    assert len(report.registered) == 1 and report.already_known == 1
    assert Frame.objects.count() == 1
    # The first key (S3 lists keys in order) is the frame's source.
    assert Frame.objects.get().source_uri == f"s3://{bucket}/acme/s1/cam-1/20240101T100000.jpg"

    again = ingest_s3(client=s3, bucket=bucket)
    assert again.registered == [] and again.already_known == 2
    assert Frame.objects.count() == 1


# ------------------------------------------------------------------ what is left out


IGNORED_KEYS = [
    "acme/s1/20240101T100000.jpg",  # too few levels
    "acme/s1/cam-1/extra/20240101T100000.jpg",  # too many levels
    "acme/s1/cam-1/2024-01-01T10:00:00.jpg",  # another stamp format
    "acme/s1/cam-1/20241301T100000.jpg",  # month 13
    "acme/s1/cam-1/20240101T100000.txt",  # not an image name
    "acme/s1/cam-1/snapshot.jpg",  # no stamp
]


@pytest.mark.django_db
def test_keys_off_the_convention_are_ignored_and_reported(s3, bucket):
    for key in IGNORED_KEYS:
        put(s3, bucket, key, image(1))
    put(s3, bucket, "acme/s1/cam-1/20240101T100000.jpg", image(2))

    report = ingest_s3(client=s3, bucket=bucket)

    assert sorted(report.ignored_keys) == sorted(IGNORED_KEYS)
    assert len(report.registered) == 1
    assert Frame.objects.get().source_uri == f"s3://{bucket}/acme/s1/cam-1/20240101T100000.jpg"


@pytest.mark.django_db
def test_the_command_reports_ignored_and_unreadable_keys(s3, bucket, s3_settings, s3_endpoint):
    put(s3, bucket, "acme/s1/cam-1/notes.txt", b"hello")
    put(s3, bucket, "acme/s1/cam-1/20240101T100000.jpg", b"definitely not a jpeg")
    put(s3, bucket, "acme/s1/cam-1/20240101T100500.jpg", image(1))

    out, err = run_command("--bucket", bucket, "--endpoint-url", s3_endpoint, "--no-queue")

    assert f"s3://{bucket}/acme/s1/cam-1/notes.txt: ignored" in err
    assert f"s3://{bucket}/acme/s1/cam-1/20240101T100000.jpg: not a readable image" in err
    assert "20240101T100500" not in err
    assert "1 new frames registered" in out


@pytest.mark.django_db
def test_a_corrupt_object_is_reported_and_registers_nothing(s3, bucket):
    put(s3, bucket, "acme/s1/cam-1/20240101T100000.jpg", image(1))
    put(s3, bucket, "acme/s1/cam-1/20240101T100500.jpg", b"\x00\x01 not an image at all")
    put(s3, bucket, "wrecked/s9/cam-9/20240101T100000.jpg", b"GIF89a but broken")
    put(s3, bucket, "acme/s1/cam-1/20240101T101000.jpg", image(2))

    report = ingest_s3(client=s3, bucket=bucket)

    assert sorted(report.unreadable) == ["acme/s1/cam-1/20240101T100500.jpg", "wrecked/s9/cam-9/20240101T100000.jpg"]
    assert len(report.registered) == 2  # the objects around it still are
    assert set(Frame.objects.values_list("source_uri", flat=True)) == {
        f"s3://{bucket}/acme/s1/cam-1/20240101T100000.jpg",
        f"s3://{bucket}/acme/s1/cam-1/20240101T101000.jpg",
    }
    # Not even the company, store, camera or shelf of a frame that could not be read.
    assert not Company.objects.filter(name="wrecked").exists()
    assert not Store.objects.filter(code="s9").exists()
    assert not Camera.objects.filter(code="cam-9").exists()
    assert Shelf.objects.count() == 1


@pytest.mark.django_db
def test_the_prefix_filters(s3, bucket):
    put(s3, bucket, "acme/s1/cam-1/20240101T100000.jpg", image(1))
    put(s3, bucket, "acme/s2/cam-1/20240101T100000.jpg", image(2))
    put(s3, bucket, "globex/s1/cam-1/20240101T100000.jpg", image(3))
    put(s3, bucket, "acme-other/s1/cam-1/20240101T100000.jpg", image(4))

    report = ingest_s3(client=s3, bucket=bucket, prefix="acme/")

    assert len(report.registered) == 2
    assert set(Frame.objects.values_list("company__name", "camera__store__code")) == {("acme", "s1"), ("acme", "s2")}

    report = ingest_s3(client=s3, bucket=bucket, prefix="globex/s1/")
    assert len(report.registered) == 1
    assert Frame.objects.count() == 3


@pytest.mark.django_db
def test_an_empty_bucket_or_prefix_registers_nothing(s3, bucket):
    put(s3, bucket, "acme/s1/cam-1/20240101T100000.jpg", image(1))
    report = ingest_s3(client=s3, bucket=bucket, prefix="nobody/")
    assert (report.registered, report.already_known, report.ignored_keys, report.unreadable) == ([], 0, [], [])
    assert Frame.objects.count() == 0


@pytest.mark.django_db
def test_known_objects_are_not_downloaded_again_across_list_pages(s3, bucket):
    """The listing comes in pages: known objects are skipped without a download on every page, new
    ones on later pages are registered."""
    keys = [f"acme/s1/cam-1/20240101T1000{n:02d}.jpg" for n in range(7)]
    for key in keys[:4]:
        put(s3, bucket, key, b"registered by an earlier run")
    for seed, key in enumerate(keys[4:]):
        put(s3, bucket, key, image(seed))
    shelf = ShelfFactory(code="cam-1", camera__code="cam-1", camera__store__code="s1",
                         camera__store__company__name="acme")
    Frame.objects.bulk_create(
        Frame(company=shelf.camera.store.company, camera=shelf.camera, shelf=shelf, image=f"frames/{n}.jpg",
              width=1, height=1, checksum=f"{n:064x}", source_uri=f"s3://{bucket}/{key}")
        for n, key in enumerate(keys[:4])
    )
    listings: list[str] = []
    downloads: list[str] = []

    def small_pages(params, **kwargs):
        params["MaxKeys"] = 2  # S3 pages hold 1000 keys; two make the same paging with seven objects
        listings.append(params.get("ContinuationToken", ""))

    s3.meta.events.register("before-parameter-build.s3.ListObjectsV2", small_pages)
    s3.meta.events.register("before-parameter-build.s3.GetObject", lambda params, **kwargs: downloads.append(params["Key"]))

    report = ingest_s3(client=s3, bucket=bucket)

    assert len(listings) == 4
    assert report.already_known == 4
    assert downloads == keys[4:]
    assert sorted(Frame.objects.get(pk=pk).source_uri for pk in report.registered) == [
        f"s3://{bucket}/{key}" for key in keys[4:]
    ]
    assert all(frame.shelf_id == shelf.pk for frame in Frame.objects.all())


@pytest.mark.django_db
def test_a_missing_bucket_is_a_command_error(s3_settings, s3_endpoint):
    with pytest.raises(CommandError, match="no-such-bucket"):
        run_command("--bucket", "no-such-bucket", "--endpoint-url", s3_endpoint, "--no-queue")


# ------------------------------------------------------------------ queueing after commit


@pytest.mark.django_db(transaction=True)
def test_the_queue_receives_exactly_the_new_frames_after_commit(s3, bucket):
    put(s3, bucket, "acme/s1/cam-1/20240101T100000.jpg", image(1))
    put(s3, bucket, "acme/s1/cam-1/20240101T101000.jpg", image(2))
    put(s3, bucket, "acme/s1/cam-1/20240101T102000.jpg", image(2))  # same image: not new
    put(s3, bucket, "acme/s1/cam-1/20240101T103000.jpg", b"broken")
    put(s3, bucket, "acme/s1/cam-1/readme.txt", b"ignored")
    queued: list[int] = []
    committed_when_queued: list[bool] = []

    def queue(frame_id: int) -> None:
        # A worker picking the id up must find the frame: it is committed when the id is queued.
        committed_when_queued.append(not transaction.get_connection().in_atomic_block)
        queued.append(frame_id)

    with transaction.atomic():
        report = ingest_s3(client=s3, bucket=bucket, queue=queue)
        assert queued == []  # nothing before the commit

    assert len(report.registered) == 2
    assert sorted(queued) == sorted(report.registered)
    assert sorted(queued) == sorted(Frame.objects.values_list("pk", flat=True))
    assert committed_when_queued == [True, True]

    queued.clear()
    report = ingest_s3(client=s3, bucket=bucket, queue=queue)
    assert report.registered == [] and queued == []  # known frames are not queued again

    put(s3, bucket, "acme/s1/cam-1/20240101T104000.jpg", image(3))
    report = ingest_s3(client=s3, bucket=bucket, queue=queue)
    assert queued == report.registered == [frame_at(bucket, "acme/s1/cam-1/20240101T104000.jpg").pk]


@pytest.mark.django_db(transaction=True)
def test_nothing_is_queued_when_the_transaction_rolls_back(s3, bucket):
    put(s3, bucket, "acme/s1/cam-1/20240101T100000.jpg", image(1))
    queued: list[int] = []

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        with transaction.atomic():
            assert len(ingest_s3(client=s3, bucket=bucket, queue=queued.append).registered) == 1
            raise Abort

    assert queued == []
    assert Frame.objects.count() == 0
    # The next run registers and queues it.
    report = ingest_s3(client=s3, bucket=bucket, queue=queued.append)
    assert queued == report.registered and len(queued) == 1


@pytest.mark.django_db
def test_the_queue_is_called_through_on_commit(s3, bucket, django_capture_on_commit_callbacks):
    put(s3, bucket, "acme/s1/cam-1/20240101T100000.jpg", image(1))
    queued: list[int] = []

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        report = ingest_s3(client=s3, bucket=bucket, queue=queued.append)

    assert queued == [] and len(callbacks) == 1
    callbacks[0]()
    assert queued == report.registered


@pytest.mark.django_db(transaction=True)
def test_the_command_queues_prelabelling_of_new_frames(s3, bucket, s3_settings, s3_endpoint, queued):
    put(s3, bucket, "acme/s1/cam-1/20240101T100000.jpg", image(1))
    put(s3, bucket, "acme/s1/cam-1/20240101T101000.jpg", image(2))

    run_command("--bucket", bucket, "--endpoint-url", s3_endpoint, "--no-queue")
    assert queued == []  # --no-queue registers only

    put(s3, bucket, "acme/s1/cam-1/20240101T102000.jpg", image(3))
    put(s3, bucket, "acme/s1/cam-1/20240101T103000.jpg", image(4))
    out, _ = run_command("--bucket", bucket, "--endpoint-url", s3_endpoint)

    assert "2 new frames registered, 2 already known" in out
    assert sorted(queued) == sorted(
        frame_at(bucket, key).pk for key in ("acme/s1/cam-1/20240101T102000.jpg", "acme/s1/cam-1/20240101T103000.jpg")
    )


@pytest.mark.django_db(transaction=True)
def test_the_beat_task_registers_and_queues(s3, bucket, s3_settings, queued):
    put(s3, bucket, "acme/s1/cam-1/20240101T100000.jpg", image(1))
    put(s3, bucket, "globex/s1/cam-1/20240101T100000.jpg", image(2))

    registered = ingest_s3_frames(bucket=bucket, prefix="acme/")

    assert registered == [frame_at(bucket, "acme/s1/cam-1/20240101T100000.jpg").pk]
    assert queued == registered
    assert ingest_s3_frames(bucket=bucket, prefix="acme/") == []
    assert queued == registered


# ------------------------------------------------------------------ Celery beat


def beat_configuration(tmp_path: Path, **env: str) -> dict:
    """The beat schedule as a fresh process builds it from the environment (settings read it at import)."""
    environ = {
        name: value for name, value in os.environ.items()
        if not name.startswith(("INGEST_", "DJANGO_", "AWS_", "CELERY_")) and name not in {"REDIS_URL", "DATABASE_URL"}
    }
    environ.update(DJANGO_SETTINGS_MODULE="backend.settings", VAR_DIR=str(tmp_path / "var"), **env)
    script = (
        "import json, django\n"
        "django.setup()\n"
        "from django.conf import settings\n"
        "from backend.celery import app\n"
        "print(json.dumps({'settings': settings.CELERY_BEAT_SCHEDULE, 'app': app.conf.beat_schedule}, default=str))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_beat_schedules_s3_ingestion_when_a_bucket_is_configured(tmp_path):
    config = beat_configuration(
        tmp_path, INGEST_S3_BUCKET="camera-frames", INGEST_S3_PREFIX="acme/", INGEST_INTERVAL_SECONDS="60"
    )

    entries = [entry for entry in config["app"].values() if entry["task"] == "annotator.tasks.ingest_s3_frames"]
    assert len(entries) == 1
    assert entries[0]["schedule"] == 60
    assert entries[0]["kwargs"] == {"bucket": "camera-frames", "prefix": "acme/"}
    assert config["app"] == config["settings"]
    assert ingest_s3_frames.name == "annotator.tasks.ingest_s3_frames"  # the scheduled name is the real task


def test_beat_schedules_nothing_without_a_bucket(tmp_path):
    config = beat_configuration(tmp_path, INGEST_S3_BUCKET="")
    assert not any(entry["task"] == "annotator.tasks.ingest_s3_frames" for entry in config["app"].values())
    # The outbox and stall sweeps, the learning loop and its build sweep run whatever the ingestion settings.
    assert [entry["task"] for entry in config["app"].values()] == [
        "annotator.tasks.deliver_search_outbox", "annotator.tasks.requeue_stalled_frames",
        "annotator.tasks.schedule_learning", "annotator.tasks.resume_reindexing"]


@pytest.mark.django_db
def test_an_unreadable_object_is_not_downloaded_again_until_it_changes(s3, bucket):
    key = "acme/s1/cam-1/20240101T100000.jpg"
    put(s3, bucket, key, b"half a jpeg")
    downloads: list[str] = []
    s3.meta.events.register("before-parameter-build.s3.GetObject", lambda params, **kwargs: downloads.append(params["Key"]))

    assert ingest_s3(client=s3, bucket=bucket).unreadable == [key]
    again = ingest_s3(client=s3, bucket=bucket)
    assert (again.unreadable, again.registered, downloads) == ([], [], [key])

    put(s3, bucket, key, image(7))  # the camera uploads the frame again, whole this time
    fixed = ingest_s3(client=s3, bucket=bucket)
    assert len(fixed.registered) == 1 and downloads == [key, key]
    assert IngestedObject.objects.get(source_uri=f"s3://{bucket}/{key}").outcome == IngestedObject.Outcome.REGISTERED


def test_beat_runs_the_learning_loop_on_its_schedule_or_not_at_all(tmp_path):
    nightly = beat_configuration(tmp_path, LEARN_SCHEDULE="30 3 * * 1")
    entry = next(e for e in nightly["app"].values() if e["task"] == "annotator.tasks.schedule_learning")
    assert "30" in entry["schedule"] and "3" in entry["schedule"]
    off = beat_configuration(tmp_path, LEARN_SCHEDULE="off")
    assert not any(e["task"] == "annotator.tasks.schedule_learning" for e in off["app"].values())
