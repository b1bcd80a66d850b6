"""A frame's state (``Frame.status``): which changes are allowed, and the one function that makes them.

    queued ──a run claims it──> processing ──pre-labelled──> ready ──submitted──> labelled
      ^  ^  ^                    │    │  │
      │  │  └── the stall sweep ─┘    │  └──the quality gate fails it──> skipped ──forced (QA)──> queued
      │  │                            └──an error──> failed
      └──────────────── retry ─────────────────────────┘  (a task's own retry claims it again: processing)

A skipped frame is never leased to an annotator; a QA lead or admin forcing it sends it back to
pre-labelling with the gate's decision marked forced, so the gate lets it through.

A frame is labelled only from ready, and nothing takes a labelled frame anywhere else. The same
state again is a change too where a run takes the frame over while it stays there: a run taking over
a stale run's claim (processing), the stall sweep sending a frame again (queued), a new pipeline
version pre-labelling a ready or a labelled frame, which keeps it ready or labelled.

Every change is one conditional UPDATE: it happens only if the frame is, at that moment, in a state
the change is allowed from (and matches the caller's extra condition), so two processes racing on a
frame cannot both change it, and neither can undo the other's change.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from django.db.models import Q
from django.utils import timezone

from annotator.models import Frame

Status = Frame.Status

TRANSITIONS: Mapping[str, frozenset[str]] = {
    Status.QUEUED: frozenset({Status.PROCESSING, Status.QUEUED}),
    Status.PROCESSING: frozenset({Status.READY, Status.FAILED, Status.QUEUED, Status.PROCESSING, Status.SKIPPED}),
    Status.FAILED: frozenset({Status.PROCESSING, Status.QUEUED}),
    Status.READY: frozenset({Status.LABELLED, Status.READY}),
    Status.LABELLED: frozenset({Status.LABELLED}),
    Status.SKIPPED: frozenset({Status.QUEUED}),
}

# The only state an annotator can lease and submit: pre-labelled and not labelled yet.
OPEN_FOR_LABELLING = Status.READY


class ForbiddenTransition(ValueError):
    """A caller asked for a change the table does not allow: a bug in the caller, not a race."""


def allowed(*, source: str, target: str) -> bool:
    return target in TRANSITIONS[source]


def sources_of(target: str) -> frozenset[str]:
    """Every state a frame may be in to change to ``target``."""
    return frozenset(source for source, targets in TRANSITIONS.items() if target in targets)


def change(*, frame_id: int, to: str, expected: Collection[str] | None = None, where: Q | None = None,
           **fields: Any) -> bool:
    """Move the frame to ``to`` if it is in one of the ``expected`` states (default: every state
    allowed to go there) and matches ``where``, writing ``fields`` with it, in one UPDATE. Returns
    whether it moved; False leaves the frame as another process left it. Raises
    ForbiddenTransition when an expected state may not go to ``to``."""
    sources = sources_of(to) if expected is None else frozenset(expected)
    forbidden = sorted(source for source in sources if not allowed(source=source, target=to))
    if forbidden or not sources:
        raise ForbiddenTransition(f"a frame may not go from {forbidden or 'nowhere'} to {to}")
    frames = Frame.objects.filter(pk=frame_id, status__in=sources)
    if where is not None:
        frames = frames.filter(where)
    return bool(frames.update(status=to, updated_at=timezone.now(), **fields))


def step(*, frame_id: int, steps: Mapping[str, str], where: Q | None = None, **fields: Any) -> str | None:
    """Move the frame from the state it is in now to the one ``steps`` gives for it, with
    ``change``. Returns the state it moved to; None when the frame is gone, its state has no step or
    ``where`` does not hold. A frame whose state changed between the read and the update is read again."""
    for _ in range(3):
        current = Frame.objects.filter(pk=frame_id).values_list("status", flat=True).first()
        if current not in steps:
            return None
        if change(frame_id=frame_id, to=steps[current], expected=[current], where=where, **fields):
            return steps[current]
        if Frame.objects.filter(pk=frame_id, status=current).exists():
            return None  # still in that state: it is ``where`` that does not hold
    return None
