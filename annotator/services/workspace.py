"""The annotator's workspace: which frames people label, who holds a frame, and submitting it.

A frame is leased to one annotator at a time, for ``FRAME_LEASE_MINUTES``; a second person opening
it is refused with who holds it. Submit is one transaction that records a Label per box (confirmed,
corrected, added or deleted, judged against the suggestion shown), marks the frame labelled, and
queues the search-space changes, delivered right after commit so the next frame learns from them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Avg, Case, F, FloatField, OuterRef, Q, QuerySet, Subquery, Value, When
from django.utils import timezone

from annotator import selectors
from annotator.models import Box, Frame, Label, Product
from annotator.services.labels import Decision, record_labels


class WorkspaceError(Exception):
    """A request the workspace refuses; the message says why, for the person who made it."""


class FrameLeased(WorkspaceError):
    pass


class FrameAlreadyLabelled(WorkspaceError):
    pass


class InvalidSubmission(WorkspaceError):
    pass


def schedule_frame(*, frame: Frame) -> bool:
    """Mark the frame for labelling when its camera has no scheduled or labelled frame in the
    store's annotation interval before it. Returns whether it was scheduled."""
    moment = frame.captured_at or frame.created_at
    interval = timedelta(hours=frame.camera.store.annotation_interval_hours)
    recent = (
        Frame.objects.filter(camera=frame.camera)
        .filter(Q(scheduled=True) | Q(status=Frame.Status.LABELLED))
        .exclude(pk=frame.pk)
        .filter(captured_at__gt=moment - interval, captured_at__lte=moment)
    )
    if recent.exists():
        return False
    Frame.objects.filter(pk=frame.pk).update(scheduled=True)
    frame.scheduled = True
    return True


def _lease_expiry():
    return timezone.now() + timedelta(minutes=settings.FRAME_LEASE_MINUTES)


def _held_by_someone_else(frame: Frame, user) -> bool:
    return (frame.leased_by_id not in (None, user.pk) and frame.lease_expires_at is not None
            and frame.lease_expires_at > timezone.now())


@transaction.atomic
def lease_frame(*, frame_id: int, user) -> Frame:
    """Give the user the frame for ``FRAME_LEASE_MINUTES`` (renewing their own lease). Raises
    FrameLeased while another annotator holds it, FrameAlreadyLabelled once it is submitted."""
    frame = selectors.frames_for(user).select_for_update(of=("self",)).get(pk=frame_id)
    if frame.status == Frame.Status.LABELLED:
        raise FrameAlreadyLabelled(f"Frame {frame.pk} is already labelled.")
    if _held_by_someone_else(frame, user):
        local = timezone.localtime(frame.lease_expires_at).strftime("%H:%M")
        raise FrameLeased(f"{frame.leased_by.get_username()} is labelling frame {frame.pk} (until {local}).")
    frame.leased_by = user
    frame.lease_expires_at = _lease_expiry()
    frame.save(update_fields=["leased_by", "lease_expires_at", "updated_at"])
    return frame


def camera_confidences(*, cameras: QuerySet) -> dict[int, float]:
    """For each of these cameras: the mean confidence of its pre-labelled frames in the
    ``SCHEDULE_CONFIDENCE_DAYS`` up to its newest one (how sure the pipeline has recently been on that
    shelf). One grouped query, linear in the cameras' pre-labelled frames; computing it per queued
    frame instead made leasing quadratic in the backlog (0.9 s at 400 frames on one camera)."""
    newest = (Frame.objects.filter(camera=OuterRef("camera"), confidence__isnull=False)
              .order_by("-captured_at").values("captured_at")[:1])
    recent = (
        Frame.objects.filter(camera__in=cameras, confidence__isnull=False)
        .annotate(newest=Subquery(newest))
        .filter(captured_at__gt=F("newest") - timedelta(days=settings.SCHEDULE_CONFIDENCE_DAYS))
        .order_by().values("camera").annotate(mean=Avg("confidence"))
    )
    return {row["camera"]: row["mean"] for row in recent}


@transaction.atomic
def lease_next_frame(*, user) -> Frame | None:
    """The next scheduled, pre-labelled frame of the user's companies that nobody else holds,
    leased to the user: their own unfinished lease first, then frames of the cameras whose recent
    predictions were least confident (labels there teach the pipeline most), oldest first."""
    now = timezone.now()
    free = Q(leased_by__isnull=True) | Q(lease_expires_at__lte=now) | Q(leased_by=user)
    waiting = selectors.frames_for(user).filter(status=Frame.Status.READY, scheduled=True).filter(free)
    confidences = camera_confidences(cameras=waiting.values("camera"))
    # Without any confidence there is nothing to order by (PostgreSQL refuses ORDER BY a constant NULL).
    by_confidence = [Case(*(When(camera_id=camera, then=Value(mean)) for camera, mean in confidences.items()),
                          default=None, output_field=FloatField()).asc(nulls_last=True)] if confidences else []
    candidates = waiting.order_by(Case(When(leased_by=user, then=0), default=1), *by_confidence,
                                  F("captured_at").asc(nulls_last=True), "pk")
    frame = candidates.select_for_update(skip_locked=True, of=("self",)).first()
    if frame is None:
        return None
    frame.leased_by = user
    frame.lease_expires_at = _lease_expiry()
    frame.save(update_fields=["leased_by", "lease_expires_at", "updated_at"])
    return frame


def release_frame(*, frame: Frame, user) -> None:
    Frame.objects.filter(pk=frame.pk, leased_by=user).update(leased_by=None, lease_expires_at=None)


@dataclass(frozen=True)
class BoxAnswer:
    """What the annotator decided for one box: an existing box (``box_id``) confirmed or relabelled
    (``product_id``) or deleted, or a new box (``bbox`` in pixels) with its product."""

    box_id: int | None = None
    bbox: tuple[float, float, float, float] | None = None
    product_id: int | None = None
    deleted: bool = False
    time_spent_ms: int = 0


@dataclass(frozen=True)
class SubmitReport:
    frame_id: int
    confirmed: int
    corrected: int
    added: int
    deleted: int


def submit_frame(*, frame_id: int, user, answers: Sequence[BoxAnswer]) -> SubmitReport:
    """Record the annotator's answers for every box of the frame in one transaction. Nothing is
    written unless everything is valid; a frame is submitted once."""
    with transaction.atomic():
        frame = (selectors.frames_for(user).select_for_update(of=("self",))
                 .select_related("camera__store").get(pk=frame_id))
        if frame.status == Frame.Status.LABELLED:
            raise FrameAlreadyLabelled(f"Frame {frame.pk} was already submitted.")
        if _held_by_someone_else(frame, user):
            raise FrameLeased(f"{frame.leased_by.get_username()} holds frame {frame.pk}; your answers were not saved.")
        decisions = _decisions(frame, answers)
        record_labels(decisions=decisions, annotator=user)
        frame.status = Frame.Status.LABELLED
        frame.leased_by = None
        frame.lease_expires_at = None
        frame.save(update_fields=["status", "leased_by", "lease_expires_at", "updated_at"])
        transaction.on_commit(_deliver_outbox)
    counts = {action: sum(1 for d in decisions if d.action == action) for action in Label.Action.values}
    return SubmitReport(frame.pk, counts["confirmed"], counts["corrected"], counts["added"], counts["deleted"])


def _deliver_outbox() -> None:
    from annotator.services.search_index import queue_delivery

    queue_delivery()


def _decisions(frame: Frame, answers: Sequence[BoxAnswer]) -> list[Decision]:
    boxes = {view.box.pk: view for view in selectors.frame_boxes(frame=frame)}
    product_ids = {a.product_id for a in answers if a.product_id is not None}
    products = Product.objects.in_bulk(product_ids)
    unknown = sorted(pid for pid in product_ids if pid not in products or products[pid].company_id != frame.company_id)
    if unknown:
        raise InvalidSubmission(f"Unknown product {unknown[0]} for this frame's company.")
    answered = [a.box_id for a in answers if a.box_id is not None]
    if len(answered) != len(set(answered)):
        raise InvalidSubmission("A box is answered twice.")
    if set(answered) - boxes.keys():
        raise InvalidSubmission(f"Box {sorted(set(answered) - boxes.keys())[0]} is not on frame {frame.pk}.")
    missing = boxes.keys() - set(answered)
    if missing:
        raise InvalidSubmission(f"Box {min(missing)} has no answer: confirm, relabel or delete every box.")
    decisions: list[Decision] = []
    for answer in answers:
        if answer.box_id is None:
            decisions.append(_added_box(frame, answer, products))
            continue
        view = boxes[answer.box_id]
        suggestion = view.suggestion
        shown_by = view.prediction.pipeline_version if view.prediction else None
        if answer.deleted:
            decisions.append(Decision(view.box, None, Label.Action.DELETED, suggestion, answer.time_spent_ms, shown_by))
        elif answer.product_id is None:
            raise InvalidSubmission(f"Box {answer.box_id} needs a product or deleted=true.")
        else:
            action = Label.Action.CONFIRMED if suggestion and suggestion.pk == answer.product_id else Label.Action.CORRECTED
            decisions.append(Decision(view.box, products[answer.product_id], action, suggestion, answer.time_spent_ms,
                                      shown_by))
    return decisions


def _added_box(frame: Frame, answer: BoxAnswer, products: dict[int, Product]) -> Decision:
    if answer.bbox is None or answer.product_id is None or answer.deleted:
        raise InvalidSubmission("A new box needs a bbox and a product.")
    x, y, w, h = answer.bbox
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > frame.width or y + h > frame.height:
        raise InvalidSubmission(f"New box {list(answer.bbox)} lies outside the {frame.width}x{frame.height} frame.")
    box = Box.objects.create(frame=frame, x=x, y=y, w=w, h=h, source=Box.Source.MANUAL)
    return Decision(box, products[answer.product_id], Label.Action.ADDED, None, answer.time_spent_ms)
