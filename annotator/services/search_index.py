"""Keeping the search space in step with the database, through the outbox.

The database is the source of truth; Qdrant is an index of it. Every write to Qdrant is an outbox
row, delivered (embedding the crop for an upsert) and marked, or left with its error for the next
delivery: nothing is lost while Qdrant is away.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotator import engines
from annotator.models import Box, Label, SearchSpaceOutbox
from annotator.services import model_sets
from annotator.services.embeddings import crop_points

logger = logging.getLogger(__name__)


def enqueue(*, boxes: Sequence[Box], operation: str) -> None:
    SearchSpaceOutbox.objects.bulk_create(
        SearchSpaceOutbox(company_id=box.frame.company_id, box=box, box_key=box.pk, operation=operation)
        for box in boxes
    )


def deliver_outbox(*, company_id: int | None = None, limit: int = 5000) -> int:
    """Apply pending search-space changes in order, to every collection that follows the company's
    labels (``model_sets.live_targets``: the set it is on, the one a rollback returns to, any being
    built); returns how many were delivered. On failure the rows stay pending with their error and the
    exception propagates, so the caller retries."""
    pending = SearchSpaceOutbox.objects.filter(delivered_at__isnull=True)
    if company_id is not None:
        pending = pending.filter(company_id=company_id)
    rows = list(pending.order_by("id")[:limit])
    by_company: dict[int, list[SearchSpaceOutbox]] = defaultdict(list)
    for row in rows:
        by_company[row.company_id].append(row)
    for company, company_rows in by_company.items():
        deliver_rows(company_id=company, rows=company_rows)
    return len(rows)


def deliver_rows(*, company_id: int, rows: Sequence[SearchSpaceOutbox]) -> None:
    # Only the latest change per box matters; earlier ones are delivered by it.
    latest: dict[int, SearchSpaceOutbox] = {}
    for row in rows:
        latest[row.box_key] = row
    upsert_ids = [key for key, row in latest.items() if row.operation == SearchSpaceOutbox.Operation.UPSERT]
    delete_ids = [key for key, row in latest.items() if row.operation == SearchSpaceOutbox.Operation.DELETE]
    try:
        for target in model_sets.live_targets(company_id=company_id):
            pipeline = target.pipeline()
            points = crop_points(box_ids=upsert_ids, pipeline=pipeline, embedder_version=target.embedder_version())
            # A box relabelled as deleted since, or removed, has no current product: drop its point.
            missing = set(upsert_ids) - {p.box_id for p in points}
            pipeline.search_space.delete(sorted(set(delete_ids) | missing))
            pipeline.search_space.upsert(points)
    except Exception as error:
        SearchSpaceOutbox.objects.filter(pk__in=[r.pk for r in rows]).update(
            attempts=F("attempts") + 1, last_error=f"{type(error).__name__}: {error}"[:2000]
        )
        raise
    SearchSpaceOutbox.objects.filter(pk__in=[r.pk for r in rows]).update(
        delivered_at=timezone.now(), attempts=F("attempts") + 1, last_error=""
    )


def queue_delivery() -> None:
    """Ask a worker to deliver the outbox now. Called after a commit, so with the broker away the
    rows stay pending, the caller carries on, and the beat sweep delivers them later."""
    from annotator.tasks import deliver_search_outbox

    try:
        deliver_search_outbox.delay()
    except Exception as error:  # kombu's OperationalError, or celery's RuntimeError from the result store
        logger.warning("could not queue the search-space delivery (%s); the beat sweep will deliver", error)


def rebuild_search_space(*, batch_size: int = 2000) -> int:
    """Recreate the collection from every current label in the database; returns the point count."""
    space = engines.search_space()
    space.recreate()
    box_ids = list(
        Label.objects.filter(is_current=True, product__isnull=False).order_by("box_id").values_list("box_id", flat=True)
    )
    for start in range(0, len(box_ids), batch_size):
        space.upsert(crop_points(box_ids=box_ids[start : start + batch_size]))
    space.flush()  # Qdrant Edge builds its HNSW graph here; a server indexes by itself
    with transaction.atomic():
        SearchSpaceOutbox.objects.filter(delivered_at__isnull=True).update(delivered_at=timezone.now())
    return len(box_ids)


def pending_count() -> int:
    return SearchSpaceOutbox.objects.filter(delivered_at__isnull=True).count()

