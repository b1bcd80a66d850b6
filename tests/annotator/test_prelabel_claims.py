"""Pre-labelling claims its frame: of two runs on one frame only the one holding the claim writes, a
run that lost its claim writes nothing (and fails nothing), and the stall sweep takes only stale claims."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from annotator import engines, tasks
from annotator.models import Box, Frame, Prediction
from annotator.services import prelabel, prelabel_queue
from inference.detector import Detection
from tests.celery_sends import prelabel_sent_to
from tests.annotator.test_learning import run_together
from tests.annotator.test_prelabel import LAYOUT
from tests.factories import BoxFactory, FrameFactory

LONG_AGO = timedelta(minutes=45)


def frame_with_boxes(**fields) -> Frame:
    frame = FrameFactory(blocks=LAYOUT, **fields)
    for (x, y, w, h), _ in LAYOUT:
        BoxFactory(frame=frame, x=x, y=y, w=w, h=h)
    return frame


def interrupt_the_run(monkeypatch, during) -> None:
    """Call ``during`` once, in the middle of the next pre-labelling run (after its claim, before it writes)."""
    real, calls = prelabel.open_image, []

    def open_image(data):
        if not calls:
            calls.append(True)
            during()
        return real(data)

    monkeypatch.setattr(prelabel, "open_image", open_image)


@pytest.mark.django_db(transaction=True)
def test_two_runs_on_a_frame_without_boxes_detect_and_write_it_once(test_engines):
    both_detecting = threading.Barrier(2, timeout=3)

    class SlowDetector:
        def detect(self, image):
            try:
                both_detecting.wait()  # the runs overlap, if both get this far
            except threading.BrokenBarrierError:
                pass
            return [Detection(10, 20, 60, 100, 0.8), Detection(90, 20, 60, 100, 0.7)]

    frame = FrameFactory(blocks=LAYOUT, checksum="c" * 64)
    with engines.override(detector=SlowDetector()):
        results = run_together(*[lambda: prelabel.prelabel_frame(frame_id=frame.pk)] * 2)

    assert sorted(type(result).__name__ for result in results) == ["ClaimLost", "Frame"], results
    assert Box.objects.filter(frame=frame).count() == 2
    assert Prediction.objects.filter(box__frame=frame).count() == 2
    frame.refresh_from_db()
    assert (frame.status, frame.status_reason, frame.prelabel_token) == (Frame.Status.READY, "", "")


@pytest.mark.django_db
def test_a_run_that_lost_its_claim_to_the_sweep_writes_nothing(test_engines, monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr("backend.celery.app.send_task", prelabel_sent_to(sent.append))
    frame = frame_with_boxes(checksum="d" * 64)
    # The sweep judges the run stalled while it works (its claim is older than "0 minutes").
    interrupt_the_run(monkeypatch, lambda: prelabel_queue.requeue_stalled_frames(older_than=timedelta(0)))

    with pytest.raises(prelabel.ClaimLost):
        prelabel.prelabel_frame(frame_id=frame.pk)

    assert sent == [frame.pk]
    assert not Prediction.objects.filter(box__frame=frame).exists()
    frame.refresh_from_db()
    assert frame.status == Frame.Status.QUEUED and frame.confidence is None
    # The run the sweep sent writes once.
    prelabel.prelabel_frame(frame_id=frame.pk)
    frame.refresh_from_db()
    assert frame.status == Frame.Status.READY
    assert Prediction.objects.filter(box__frame=frame).count() == 3


@pytest.mark.django_db
def test_a_run_taken_over_that_then_fails_leaves_the_frame_the_other_run_finished(test_engines, monkeypatch):
    monkeypatch.setattr("backend.celery.app.send_task", prelabel_sent_to(lambda frame_id: None))
    frame = frame_with_boxes(checksum="e" * 64)
    finished: list[int] = []

    def taken_over_then_broken():
        prelabel_queue.requeue_stalled_frames(older_than=timedelta(0))
        prelabel.prelabel_frame(frame_id=frame.pk)  # the run the sweep sent, done at once
        finished.extend(Prediction.objects.filter(box__frame=frame).values_list("pk", flat=True))
        raise OSError("the stalled run wakes up to a broken disk")

    interrupt_the_run(monkeypatch, taken_over_then_broken)

    with pytest.raises(OSError):
        prelabel.prelabel_frame(frame_id=frame.pk)

    frame.refresh_from_db()
    assert (frame.status, frame.status_reason) == (Frame.Status.READY, "")
    assert sorted(Prediction.objects.filter(box__frame=frame).values_list("pk", flat=True)) == sorted(finished)
    assert len(finished) == 3


@pytest.mark.django_db
def test_a_frame_merely_waiting_in_a_long_queue_is_not_sent_again(monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr("backend.celery.app.send_task", prelabel_sent_to(sent.append))
    waiting = FrameFactory(status=Frame.Status.QUEUED)  # its task sent, behind an hour of others
    Frame.objects.filter(pk=waiting.pk).update(updated_at=timezone.now() - LONG_AGO)

    assert prelabel_queue.requeue_stalled_frames(older_than=timedelta(minutes=30)) == sent == []
    assert Frame.objects.get(pk=waiting.pk).status_reason == ""


@pytest.mark.django_db
def test_the_stall_sweep_takes_only_stale_claims(monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr("backend.celery.app.send_task", prelabel_sent_to(sent.append))
    now = timezone.now()
    frames = {
        # Sent, and waiting behind others in a long queue: no run has claimed it yet.
        "waiting": FrameFactory(status=Frame.Status.QUEUED),
        "stalled": FrameFactory(status=Frame.Status.PROCESSING, prelabel_token="task-1/dead",
                                prelabel_claimed_at=now - LONG_AGO),
        "running": FrameFactory(status=Frame.Status.PROCESSING, prelabel_token="task-2/alive", prelabel_claimed_at=now),
        # Its task could not be sent (the broker was away): a claim time without a run.
        "unsent": FrameFactory(status=Frame.Status.QUEUED, prelabel_claimed_at=now - LONG_AGO),
        "re-labelling": FrameFactory(status=Frame.Status.LABELLED, prelabel_token="task-3/slow",
                                     prelabel_claimed_at=now - LONG_AGO),
    }
    Frame.objects.update(updated_at=now - LONG_AGO)

    swept = prelabel_queue.requeue_stalled_frames(older_than=timedelta(minutes=30))

    assert sorted(swept) == sorted(sent) == sorted([frames["stalled"].pk, frames["unsent"].pk])
    after = {name: Frame.objects.get(pk=frame.pk) for name, frame in frames.items()}
    for name in ("stalled", "unsent"):
        assert (after[name].status, after[name].prelabel_token, after[name].prelabel_claimed_at) == (
            Frame.Status.QUEUED, "", None)
        assert "not pre-labelled after 30 minutes" in after[name].status_reason
    assert after["running"].status == Frame.Status.PROCESSING and after["running"].prelabel_token == "task-2/alive"
    assert after["waiting"].status == Frame.Status.QUEUED and after["waiting"].status_reason == ""
    assert after["re-labelling"].status == Frame.Status.LABELLED
    assert prelabel_queue.requeue_stalled_frames(older_than=timedelta(minutes=30)) == []


@pytest.mark.django_db
def test_a_frame_whose_task_could_not_be_sent_is_left_for_the_sweep(monkeypatch):
    frame = FrameFactory(status=Frame.Status.QUEUED)

    def broker_away(frame_id):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr("backend.celery.app.send_task", prelabel_sent_to(broker_away))
    prelabel_queue.queue_prelabelling(frame_id=frame.pk)
    frame.refresh_from_db()
    assert frame.prelabel_claimed_at is not None and frame.prelabel_token == ""

    sent: list[int] = []
    monkeypatch.setattr("backend.celery.app.send_task", prelabel_sent_to(sent.append))
    assert prelabel_queue.requeue_stalled_frames(older_than=timedelta(0)) == sent == [frame.pk]


@pytest.mark.django_db
def test_a_task_delivered_again_takes_over_its_own_claim_but_no_other_tasks(test_engines):
    # A worker died mid-run: the broker delivers the same task (same id) again at once.
    frame = frame_with_boxes(checksum="f" * 64, status=Frame.Status.PROCESSING, prelabel_token="task-1/dead",
                             prelabel_claimed_at=timezone.now())

    with pytest.raises(prelabel.ClaimLost):
        prelabel.prelabel_frame(frame_id=frame.pk, run_id="task-2")
    assert tasks.prelabel_frame.apply(args=[frame.pk], task_id="task-3").get() is None  # not a failure, no retry
    frame.refresh_from_db()
    assert (frame.status, frame.prelabel_token) == (Frame.Status.PROCESSING, "task-1/dead")
    assert not Prediction.objects.filter(box__frame=frame).exists()

    assert tasks.prelabel_frame.apply(args=[frame.pk], task_id="task-1").get() == frame.pk
    frame.refresh_from_db()
    assert (frame.status, frame.prelabel_token) == (Frame.Status.READY, "")
    assert Prediction.objects.filter(box__frame=frame).count() == 3
