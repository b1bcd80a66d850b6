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
from annotator.models import Box, Frame, Label, SearchSpaceOutbox
from annotator.services.embeddings import crop_vectors, current_embedder_version
from inference.search_space import CropPoint

logger = logging.getLogger(__name__)


def enqueue(*, boxes: Sequence[Box], operation: str) -> None:
    SearchSpaceOutbox.objects.bulk_create(
        SearchSpaceOutbox(company_id=box.frame.company_id, box=box, box_key=box.pk, operation=operation)
        for box in boxes
    )


def deliver_outbox(*, company_id: int | None = None, limit: int = 5000) -> int:
    """Apply pending search-space changes in order; returns how many were delivered. On failure the
    rows stay pending with their error and the exception propagates, so the caller retries."""
    pending = SearchSpaceOutbox.objects.filter(delivered_at__isnull=True)
    if company_id is not None:
        pending = pending.filter(company_id=company_id)
    # Only the latest change per box matters; earlier ones are delivered by it.
    rows = list(pending.order_by("id")[:limit])
    if not rows:
        return 0
    latest: dict[int, SearchSpaceOutbox] = {}
    for row in rows:
        latest[row.box_key] = row
    upsert_ids = [key for key, row in latest.items() if row.operation == SearchSpaceOutbox.Operation.UPSERT]
    delete_ids = [key for key, row in latest.items() if row.operation == SearchSpaceOutbox.Operation.DELETE]
    try:
        space = engines.search_space()
        points = crop_points(box_ids=upsert_ids)
        # A box relabelled as deleted since, or removed, has no current product: drop its point.
        missing = set(upsert_ids) - {p.box_id for p in points}
        space.delete(sorted(set(delete_ids) | missing))
        space.upsert(points)
    except Exception as error:
        SearchSpaceOutbox.objects.filter(pk__in=[r.pk for r in rows]).update(
            attempts=F("attempts") + 1, last_error=f"{type(error).__name__}: {error}"[:2000]
        )
        raise
    SearchSpaceOutbox.objects.filter(pk__in=[r.pk for r in rows]).update(
        delivered_at=timezone.now(), attempts=F("attempts") + 1, last_error=""
    )
    return len(rows)


def queue_delivery() -> None:
    """Ask a worker to deliver the outbox now. Called after a commit, so with the broker away the
    rows stay pending, the caller carries on, and the beat sweep delivers them later."""
    from annotator.tasks import deliver_search_outbox

    try:
        deliver_search_outbox.delay()
    except Exception as error:  # kombu's OperationalError, or celery's RuntimeError from the result store
        logger.warning("could not queue the search-space delivery (%s); the beat sweep will deliver", error)


def crop_points(*, box_ids: Sequence[int]) -> list[CropPoint]:
    """Embed the labelled boxes (one batch per frame) and return them as search-space points."""
    labels = (
        Label.objects.filter(box_id__in=box_ids, is_current=True, product__isnull=False)
        .select_related("box__frame__camera", "product")
        .order_by("box__frame_id", "box_id")
    )
    by_frame: dict[int, list[Label]] = defaultdict(list)
    for label in labels:
        by_frame[label.box.frame_id].append(label)
    points: list[CropPoint] = []
    embedder_version = current_embedder_version() if by_frame else None
    for frame_labels in by_frame.values():
        frame: Frame = frame_labels[0].box.frame
        # Pre-labelling stored most crops' embeddings; only boxes drawn by hand are embedded here.
        vectors = crop_vectors(frame=frame, boxes=[label.box for label in frame_labels],
                               embedder_version=embedder_version)
        points.extend(
            CropPoint(
                box_id=label.box_id,
                vector=vector,
                product_id=label.product_id,
                frame_id=frame.pk,
                company_id=frame.company_id,
                store_id=frame.camera.store_id,
                shelf_id=frame.shelf_id,
                category_id=label.product.category_id,
                annotated_at=frame.captured_at or label.created_at,
            )
            for label, vector in zip(frame_labels, vectors)
        )
    return points


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

