"""Recording people's (and imports') decisions about boxes. History is never overwritten: a new
decision retires the box's current label and adds a row."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from annotator.models import Box, Label, PipelineVersion, Product, SearchSpaceOutbox
from annotator.services import outbox


@dataclass(frozen=True)
class Decision:
    box: Box
    product: Product | None  # None only for a deletion
    action: str
    suggested_product: Product | None = None
    time_spent_ms: int = 0
    suggested_by: PipelineVersion | None = None
    auto_accepted: bool = False  # kept an auto-accepted suggestion unchanged (reports count these apart)


@transaction.atomic
def record_labels(*, decisions: Sequence[Decision], annotator=None) -> list[Label]:
    """Record decisions in one transaction and queue the matching search-space changes: labelled
    crops are upserted, deleted boxes removed."""
    box_ids = [decision.box.pk for decision in decisions]
    Label.objects.filter(box_id__in=box_ids, is_current=True).update(is_current=False)
    labels = Label.objects.bulk_create(
        Label(
            box=decision.box,
            product=decision.product,
            annotator=annotator,
            action=decision.action,
            suggested_product=decision.suggested_product,
            suggested_by=decision.suggested_by,
            time_spent_ms=decision.time_spent_ms,
            auto_accepted=decision.auto_accepted,
        )
        for decision in decisions
    )
    upserts = [d.box for d in decisions if d.action not in Label.Action.without_product()]
    deletions = [d.box for d in decisions if d.action in Label.Action.without_product()]
    outbox.enqueue(boxes=upserts, operation=SearchSpaceOutbox.Operation.UPSERT)
    outbox.enqueue(boxes=deletions, operation=SearchSpaceOutbox.Operation.DELETE)
    return labels
