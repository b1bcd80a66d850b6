"""The web's side of the search-space outbox: a labelling change adds outbox rows, and a worker is
asked by name to deliver them (``annotator.services.search_index`` delivers, in the worker).

Nothing here opens the search space or loads a model, so the web process, which only records
decisions, never loads torch or a Qdrant client.
"""
from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

from django.db import transaction

from annotator.models import Box, SearchSpaceOutbox
from annotator.services.dispatch import send_task

logger = logging.getLogger(__name__)

DELIVERY_TASK = "annotator.tasks.deliver_search_outbox"


def enqueue(*, boxes: Sequence[Box], operation: str) -> None:
    SearchSpaceOutbox.objects.bulk_create(
        SearchSpaceOutbox(company_id=box.frame.company_id, box=box, box_key=box.pk, operation=operation)
        for box in boxes
    )


def failing(*, company_id: int | None = None) -> bool:
    """Whether pending rows have already failed a delivery (Qdrant away): a task is retrying them,
    or beat's sweep will."""
    rows = SearchSpaceOutbox.objects.filter(delivered_at__isnull=True, attempts__gt=0)
    if company_id is not None:
        rows = rows.filter(company_id=company_id)
    return rows.exists()


def queue_delivery(*, company_id: int | None = None) -> None:
    """Ask a worker to deliver the outbox (``company_id``'s, or every company's) now. Called after
    a commit, so with the broker away the rows stay pending, the caller carries on, and the beat
    sweep delivers them later. While deliveries are failing nothing is sent: the retrying task or
    the sweep delivers these rows too, and an outage does not pile up a task per submit."""
    if failing(company_id=company_id):
        logger.info("search-space deliveries are failing; the retrying delivery or the beat sweep delivers")
        return
    send_task(DELIVERY_TASK, **({"company_id": company_id} if company_id is not None else {}))


def forget_boxes(*, box_ids: Collection[int]) -> None:
    """Queue the removal of these boxes' points (before the boxes or their labels are deleted
    outside the labelling services, e.g. in Django's admin) and a delivery after the commit."""
    boxes = list(Box.objects.filter(pk__in=list(box_ids)).select_related("frame").order_by("pk"))
    enqueue(boxes=boxes, operation=SearchSpaceOutbox.Operation.DELETE)
    if boxes:
        transaction.on_commit(queue_delivery)


def pending_count() -> int:
    return SearchSpaceOutbox.objects.filter(delivered_at__isnull=True).count()
