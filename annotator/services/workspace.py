"""The annotator's workspace: which frames people label, who holds a frame, and submitting it.

A frame is leased to one annotator at a time, for ``FRAME_LEASE_MINUTES``; a second person opening
it is refused with who holds it. Only a ready frame (pre-labelled, not labelled yet; see
``frame_states``) is leased or submitted. Submit is one transaction that marks the frame labelled (a
conditional update, so a frame is submitted once), records a Label per box (confirmed, corrected,
added or deleted, judged against the suggestion shown, which the client names), and queues the
search-space changes, delivered right after commit so the next frame learns from them.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Avg, Case, F, FloatField, OuterRef, Q, QuerySet, Subquery, Value, When
from django.utils import timezone

from annotator import selectors
from annotator.models import Box, Frame, Label, Product
from annotator.permissions import LABELLERS, companies_with_role
from annotator.services import frame_states, outbox
from annotator.services.labels import Decision, record_labels


class WorkspaceError(Exception):
    """A request the workspace refuses; the message says why, for the person who made it."""


class FrameLeased(WorkspaceError):
    pass


class FrameAlreadyLabelled(WorkspaceError):
    pass


class FrameNotReady(WorkspaceError):
    pass


class StalePredictions(WorkspaceError):
    """The frame was pre-labelled again after the client loaded it: its answers were judged against
    suggestions it no longer shows."""


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


def _free_for(user) -> Q:
    """Frames nobody else holds: no lease, an expired one, or the user's own."""
    return Q(leased_by__isnull=True) | Q(lease_expires_at__lte=timezone.now()) | Q(leased_by=user)


def _held_by_someone_else(frame: Frame, user) -> bool:
    return (frame.leased_by_id not in (None, user.pk) and frame.lease_expires_at is not None
            and frame.lease_expires_at > timezone.now())


def _take_lease(*, frame_id: int, user, extra: Q | None = None) -> bool:
    """Lease the frame to the user if it is open for labelling and nobody else holds it (a conditional update)."""
    frames = Frame.objects.filter(pk=frame_id, status=frame_states.OPEN_FOR_LABELLING).filter(_free_for(user))
    if extra is not None:
        frames = frames.filter(extra)
    return bool(frames.update(leased_by=user, lease_expires_at=_lease_expiry(), updated_at=timezone.now()))


def lease_frame(*, frame_id: int, user) -> Frame:
    """Give the user the frame for ``FRAME_LEASE_MINUTES`` (renewing their own lease). Raises
    FrameLeased while another annotator holds it, FrameAlreadyLabelled once it is submitted,
    FrameNotReady before it is pre-labelled (or when it failed)."""
    frame_id = selectors.frames_for(user).values_list("pk", flat=True).get(pk=frame_id)
    for _ in range(2):
        leased = _take_lease(frame_id=frame_id, user=user)
        frame = Frame.objects.select_related("leased_by").get(pk=frame_id)
        if leased:
            return frame
        if frame.status == Frame.Status.LABELLED:
            raise FrameAlreadyLabelled(f"Frame {frame.pk} is already labelled.")
        if frame.status != frame_states.OPEN_FOR_LABELLING:
            raise FrameNotReady(f"Frame {frame.pk} is {frame.status}, not ready to label yet.")
        if _held_by_someone_else(frame, user):
            local = timezone.localtime(frame.lease_expires_at).strftime("%H:%M")
            raise FrameLeased(f"{frame.leased_by.get_username()} is labelling frame {frame.pk} (until {local}).")
        # Released between the update and the read: try once more.
    raise FrameLeased(f"Frame {frame_id} is changing hands; try again.")


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
    """The next scheduled, pre-labelled frame that nobody else holds, of a company the user labels for,
    leased to the user: their own unfinished lease first, then frames of the cameras whose recent
    predictions were least confident (labels there teach the pipeline most), oldest first."""
    waiting = (selectors.frames_for(user).filter(status=frame_states.OPEN_FOR_LABELLING, scheduled=True)
               .filter(_free_for(user), company__in=companies_with_role(user, *LABELLERS)))
    confidences = camera_confidences(cameras=waiting.values("camera"))
    # Without any confidence there is nothing to order by (PostgreSQL refuses ORDER BY a constant NULL).
    by_confidence = [Case(*(When(camera_id=camera, then=Value(mean)) for camera, mean in confidences.items()),
                          default=None, output_field=FloatField()).asc(nulls_last=True)] if confidences else []
    candidates = waiting.order_by(Case(When(leased_by=user, then=0), default=1), *by_confidence,
                                  F("captured_at").asc(nulls_last=True), "pk")
    lost: list[int] = []
    for _ in range(3):
        frame = candidates.exclude(pk__in=lost).select_for_update(skip_locked=True, of=("self",)).first()
        if frame is None:
            return None
        # A conditional update as well: a frame submitted or leased since the query is not handed out.
        if _take_lease(frame_id=frame.pk, user=user, extra=Q(scheduled=True)):
            frame.refresh_from_db()
            return frame
        lost.append(frame.pk)
    return None


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


def submit_frame(*, frame_id: int, user, answers: Sequence[BoxAnswer],
                 shown_predictions: Collection[int] | None = None) -> SubmitReport:
    """Record the annotator's answers for every box of the frame in one transaction. Nothing is
    written unless everything is valid; a frame is submitted once, and only when it is ready.
    ``shown_predictions``: the ids of the predictions the client showed; when they are no longer the
    frame's current ones it was pre-labelled again meanwhile, and StalePredictions is raised (the
    answers would be judged against suggestions nobody saw). None: judged against the current ones."""
    with transaction.atomic():
        frame = selectors.frames_for(user).select_related("camera__store").get(pk=frame_id)
        # The state change comes first: of two submits at once, the second finds the frame labelled.
        submitted = frame_states.change(
            frame_id=frame.pk, to=Frame.Status.LABELLED, expected=[frame_states.OPEN_FOR_LABELLING],
            where=_free_for(user), leased_by=None, lease_expires_at=None)
        if not submitted:
            raise _refused_submit(frame_id=frame.pk, user=user)
        boxes = selectors.frame_boxes(frame=frame)
        if shown_predictions is not None:
            current = {view.prediction.pk for view in boxes if view.prediction is not None}
            if set(shown_predictions) != current:
                raise StalePredictions(f"Frame {frame.pk} was pre-labelled again after you opened it; your "
                                       "answers were not saved. Reload it to see the new suggestions.")
        decisions = _decisions(frame, boxes, answers)
        record_labels(decisions=decisions, annotator=user)
        transaction.on_commit(lambda: _deliver_outbox(company_id=frame.company_id))
    counts = {action: sum(1 for d in decisions if d.action == action) for action in Label.Action.values}
    return SubmitReport(frame.pk, counts["confirmed"], counts["corrected"], counts["added"], counts["deleted"])


def _refused_submit(*, frame_id: int, user) -> WorkspaceError:
    frame = Frame.objects.select_related("leased_by").get(pk=frame_id)
    if frame.status == Frame.Status.LABELLED:
        return FrameAlreadyLabelled(f"Frame {frame.pk} was already submitted.")
    if frame.status != frame_states.OPEN_FOR_LABELLING:
        return FrameNotReady(f"Frame {frame.pk} is {frame.status}, not ready to label; your answers were not saved.")
    if _held_by_someone_else(frame, user):
        return FrameLeased(f"{frame.leased_by.get_username()} holds frame {frame.pk}; your answers were not saved.")
    return WorkspaceError(f"Frame {frame.pk} changed while you submitted it; your answers were not saved.")


def _deliver_outbox(*, company_id: int) -> None:
    outbox.queue_delivery(company_id=company_id)


def _decisions(frame: Frame, views: Sequence[selectors.BoxView], answers: Sequence[BoxAnswer]) -> list[Decision]:
    boxes = {view.box.pk: view for view in views}
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
            # An auto-accepted box left unchanged is recorded as such; a changed one is a normal correction.
            kept_auto = action == Label.Action.CONFIRMED and view.prediction is not None and view.prediction.auto_accepted
            decisions.append(Decision(view.box, products[answer.product_id], action, suggestion, answer.time_spent_ms,
                                      shown_by, auto_accepted=kept_auto))
    return decisions


def _added_box(frame: Frame, answer: BoxAnswer, products: dict[int, Product]) -> Decision:
    if answer.bbox is None or answer.product_id is None or answer.deleted:
        raise InvalidSubmission("A new box needs a bbox and a product.")
    x, y, w, h = answer.bbox
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > frame.width or y + h > frame.height:
        raise InvalidSubmission(f"New box {list(answer.bbox)} lies outside the {frame.width}x{frame.height} frame.")
    box = Box.objects.create(frame=frame, x=x, y=y, w=w, h=h, source=Box.Source.MANUAL)
    return Decision(box, products[answer.product_id], Label.Action.ADDED, None, answer.time_spent_ms)
