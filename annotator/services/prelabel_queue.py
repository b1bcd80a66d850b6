"""Frames on their way to pre-labelling: sending a frame to a worker by name, retrying a failed
one, and beat's sweep of frames whose run died. Database and broker only: the web retries frames
and queues uploads with it, while the run itself (``services.prelabel``) is the worker's."""
from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotator.models import Frame
from annotator.services import frame_states
from annotator.services.dispatch import send_task

logger = logging.getLogger(__name__)
PRELABEL_TASK = "annotator.tasks.prelabel_frame"
# A frame's pre-labelling claim, cleared: what a finished, failed or re-queued run leaves.
RELEASED = {"prelabel_token": "", "prelabel_claimed_at": None}


def retry_frame(*, frame: Frame) -> bool:
    """Queue a failed frame for pre-labelling again (after commit). Returns False for a frame that
    has not failed: retrying a queued, processing or finished frame would only duplicate work."""
    moved = frame_states.change(frame_id=frame.pk, to=Frame.Status.QUEUED, expected=[Frame.Status.FAILED],
                                status_reason="", **RELEASED)
    if moved:
        transaction.on_commit(lambda: queue_prelabelling(frame_id=frame.pk))
    return moved


def force_frame(*, frame: Frame) -> bool:
    """Send a frame the quality gate skipped back to pre-labelling without the gate (a QA lead's
    call; after commit): its decision is kept, marked forced. Returns False for a frame that is not
    skipped (a conditional update: two QA leads forcing it at once send it once)."""
    quality = {**(frame.quality or {"passed": False, "reasons": [], "scores": {}}), "forced": True}
    moved = frame_states.change(frame_id=frame.pk, to=Frame.Status.QUEUED, expected=[Frame.Status.SKIPPED],
                                quality=quality, status_reason="forced through the quality gate", **RELEASED)
    if moved:
        frame.status, frame.quality = Frame.Status.QUEUED, quality
        transaction.on_commit(lambda: queue_prelabelling(frame_id=frame.pk))
    return moved


def queue_prelabelling(*, frame_id: int) -> None:
    """Send the frame to a pre-labelling worker. With the broker away the frame stays queued (what
    called this has committed), stamped as unsent, and ``requeue_stalled_frames`` sends it later."""
    if not send_task(PRELABEL_TASK, frame_id):
        # A claim time without a run: nobody will pre-label it unless the sweep sends it again.
        Frame.objects.filter(pk=frame_id, status=Frame.Status.QUEUED, prelabel_token="").update(
            prelabel_claimed_at=timezone.now())


def requeue_stalled_frames(*, older_than: timedelta) -> list[int]:
    """Queue again every queued or processing frame whose claim is older than ``older_than``: the run
    holding it died (a worker killed on the filesystem broker, which had already deleted the message)
    or hangs, or its task could not be sent (the broker was away). The stalled run loses its claim
    and writes nothing if it ever wakes up. A frame merely waiting in a long queue has no claim and
    is left alone. Each says so in its reason. Returns the frame ids."""
    stale = Frame.objects.filter(status__in=[Frame.Status.QUEUED, Frame.Status.PROCESSING],
                                 prelabel_claimed_at__lt=timezone.now() - older_than)
    minutes = round(older_than.total_seconds() / 60)
    frame_ids = []
    for frame_id, token, claimed_at in stale.values_list("pk", "prelabel_token", "prelabel_claimed_at"):
        # Only the claim seen stale: a run that claimed or finished the frame meanwhile keeps it.
        if frame_states.change(frame_id=frame_id, to=Frame.Status.QUEUED,
                               expected=[Frame.Status.QUEUED, Frame.Status.PROCESSING],
                               where=Q(prelabel_token=token, prelabel_claimed_at=claimed_at),
                               status_reason=f"queued again: not pre-labelled after {minutes} minutes", **RELEASED):
            frame_ids.append(frame_id)
    if frame_ids:
        logger.warning("pre-labelling of frames %s stalled; queued again", frame_ids)
    for frame_id in frame_ids:
        queue_prelabelling(frame_id=frame_id)
    return frame_ids
