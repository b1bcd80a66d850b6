"""Keeping the search space in step with the database: the worker's delivery of the outbox, the
rebuild of the base collection, and the build of a model set's collection. Worker only: it embeds
crops and writes to Qdrant (the web adds outbox rows and asks for a delivery: ``services.outbox``).

The database is the source of truth; Qdrant is an index of it. Every change to a labelled box
adds an outbox row; a delivery writes the box's state as the database has it *now* (its current
label's product, or no point) to every collection that follows the company's labels, and marks the
rows it read. A failed delivery leaves its rows pending with their error: nothing is lost while
Qdrant is away.

Several processes deliver (the worker's task, beat's sweep, every pre-labelling, a rebuild), so
each delivery embeds its crops outside any lock and then, holding the company's lock
(``company_lock``), writes only the boxes whose current label is still the one it embedded, and
settles its rows in the same transaction. A box whose label changed meanwhile keeps its rows
pending for the next delivery. So writes to a collection happen one delivery at a time per company,
and an older label never overwrites a newer one, however the deliveries interleave.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from annotator import engines
from annotator.models import Label, ModelSet, SearchSpaceOutbox
from annotator.services import serving
from annotator.services.model_sets import ModelSetStateError
from annotator.services.embeddings import crop_points

logger = logging.getLogger(__name__)

IDS_PER_QUERY = 10_000  # SQLite builds without a raised limit take ~32k parameters per statement
_LOCK_NAMESPACE = 0x5EA5C4  # first key of PostgreSQL's two-key advisory locks: this module's


@contextmanager
def company_lock(*, company_id: int) -> Iterator[None]:
    """Hold the company's search-space lock for the block, inside one transaction: whoever writes
    the company's points into a collection (a delivery, a collection build) takes it, so those
    writes happen one at a time. Released when the transaction ends (at the block's end, or the
    outer transaction's). Keep the block short: embed before taking it.

    PostgreSQL: a transaction-level advisory lock on the company, which blocks nothing else. SQLite
    has no row locks: the project opens every transaction IMMEDIATE (settings), so the transaction
    itself holds the database's write lock, which serialises every writer anyway."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, int(company_id)])
        yield


def label_states(*, box_ids: Iterable[int]) -> dict[int, int]:
    """The id of each box's current label with a product; a box without one (deleted, removed, or
    gone) is left out. Two reads that agree mean nobody relabelled the box between them."""
    states: dict[int, int] = {}
    for chunk in _chunks(list(box_ids)):
        states.update(Label.objects.filter(box_id__in=chunk, is_current=True, product__isnull=False)
                      .values_list("box_id", "pk"))
    return states


def index_current(*, company_id: int, box_ids: Sequence[int], targets: Sequence[serving.Target],
                  settle: Callable[[set[int]], None] | None = None) -> set[int]:
    """Write the current state of the company's ``box_ids`` to each target's collection: a point
    for each box with a current product label, none for the others. Crops are embedded first,
    without a lock; then, under ``company_lock``, boxes whose label changed since are left out and
    the rest written, and ``settle(changed)`` runs in the same transaction. Returns the box ids left
    out (changed meanwhile: their own outbox rows bring them). A collection build's batch written
    this way never puts its older copy of a box over a label the outbox delivered meanwhile."""
    box_ids = list(dict.fromkeys(box_ids))
    seen = label_states(box_ids=box_ids)
    labelled = [box_id for box_id in box_ids if box_id in seen]
    planned = []
    for target in targets:
        pipeline = target.pipeline()
        points = (crop_points(box_ids=labelled, pipeline=pipeline, embedder_version=target.embedder_version())
                  if labelled else [])
        planned.append((pipeline.search_space, points))
    with company_lock(company_id=company_id):
        now = label_states(box_ids=box_ids)
        changed = {box_id for box_id in box_ids if now.get(box_id) != seen.get(box_id)}
        for space, points in planned:
            fresh = [point for point in points if point.box_id not in changed]
            # No point for a box without a current product (deleted, removed, or the box gone).
            gone = sorted(set(box_ids) - changed - {point.box_id for point in fresh})
            space.delete(gone)
            space.upsert(fresh)
        if settle is not None:
            settle(changed)
    return changed


def deliver_outbox(*, company_id: int | None = None, limit: int = 5000) -> int:
    """Deliver pending search-space changes, the oldest first, ``limit`` rows per company, to every
    collection that follows the company's labels (``serving.live_targets``: the set it is on, the
    one a rollback returns to, any being built); returns how many rows this call delivered (rows
    another delivery settled first are not counted). A company whose delivery fails keeps its rows
    pending with their error; the others are still delivered, then the first error is raised, so
    the caller retries."""
    if company_id is not None:
        companies = [company_id]
    else:
        companies = list(SearchSpaceOutbox.objects.filter(delivered_at__isnull=True)
                         .order_by("company_id").values_list("company_id", flat=True).distinct())
    delivered, failure = 0, None
    for company in companies:
        try:
            delivered += deliver_company(company_id=company, limit=limit)
        except Exception as error:
            failure = failure or error
    if failure is not None:
        raise failure
    return delivered


def deliver_company(*, company_id: int, limit: int = 5000) -> int:
    """One delivery of the company's oldest pending rows (see the module docstring); returns how
    many it settled."""
    rows = list(SearchSpaceOutbox.objects.filter(company_id=company_id, delivered_at__isnull=True)
                .order_by("id").values_list("pk", "box_key")[:limit])
    if not rows:
        return 0
    delivered = 0

    def settle(changed: set[int]) -> None:
        nonlocal delivered
        # Only rows still pending: a delivery that settled them first wrote the same state or a newer one.
        done = [pk for pk, box_key in rows if box_key not in changed]
        delivered = SearchSpaceOutbox.objects.filter(pk__in=done, delivered_at__isnull=True).update(
            delivered_at=timezone.now(), attempts=F("attempts") + 1, last_error="")

    try:
        # Read after the rows, so a set whose build starts later reads their labels itself.
        targets = serving.live_targets(company_id=company_id)
        index_current(company_id=company_id, box_ids=[box_key for _, box_key in rows], targets=targets,
                      settle=settle)
    except Exception as error:
        SearchSpaceOutbox.objects.filter(pk__in=[pk for pk, _ in rows], delivered_at__isnull=True).update(
            attempts=F("attempts") + 1, last_error=f"{type(error).__name__}: {error}"[:2000])
        raise
    return delivered


def rebuild_search_space(*, batch_size: int = 2000) -> int:
    """Recreate the base collection from every current label in the database; returns the point
    count. Settles only the rows pending when it started, and only for companies the base
    collection alone follows: a label changed while it runs keeps its row for the next delivery,
    and so do the rows other collections still need."""
    space = engines.search_space()
    pending = list(SearchSpaceOutbox.objects.filter(delivered_at__isnull=True).values_list("pk", "company_id"))
    space.recreate()
    labelled = list(Label.objects.filter(is_current=True, product__isnull=False)
                    .order_by("box__frame__company_id", "box_id").values_list("box__frame__company_id", "box_id"))
    base = serving.Target(None)
    by_company: dict[int, list[int]] = {}
    for company_id, box_id in labelled:
        by_company.setdefault(company_id, []).append(box_id)
    for company_id, box_ids in by_company.items():
        for start in range(0, len(box_ids), batch_size):
            index_current(company_id=company_id, box_ids=box_ids[start : start + batch_size], targets=[base])
    space.flush()  # Qdrant Edge builds its HNSW graph here; a server indexes by itself
    followed_by_base_only = {
        company_id for company_id in {c for _, c in pending}
        if [t.model_set for t in serving.live_targets(company_id=company_id)] == [None]}
    settled = [pk for pk, company_id in pending if company_id in followed_by_base_only]
    for chunk in _chunks(settled):
        SearchSpaceOutbox.objects.filter(pk__in=chunk, delivered_at__isnull=True).update(delivered_at=timezone.now())
    return len(labelled)


def labelled_boxes(*, company_id: int) -> QuerySet[Label]:
    return Label.objects.filter(is_current=True, product__isnull=False, box__frame__company_id=company_id)


def build_index(*, model_set: ModelSet, batch_size: int | None = None, log: Callable[[str], None] = logger.info,
                batches: int | None = None) -> ModelSet:
    """Put every labelled crop of the set's company into the set's collection, in box-id order, a
    batch at a time, each batch's end stored as the cursor: after a crash the build resumes from the
    cursor. Labels changed meanwhile reach the collection through the outbox (which writes to sets
    being built). ``batches``: stop after that many (tests). Returns the set, ready when done."""
    batch_size = batch_size or settings.LEARN_REINDEX_BATCH
    target = serving.Target(model_set)
    space = engines.model_set_engines(model_set.folder).search_space
    boxes = labelled_boxes(company_id=model_set.company_id)
    if model_set.index_state == ModelSet.IndexState.READY:
        return model_set
    if ModelSet.objects.filter(pk=model_set.pk, index_state=ModelSet.IndexState.NONE).update(
            index_state=ModelSet.IndexState.BUILDING, total_boxes=boxes.count(), index_cursor=0, indexed_boxes=0,
            index_heartbeat_at=timezone.now(), index_error=""):
        space.ensure_collection()
    model_set.refresh_from_db()
    cursor, done = model_set.index_cursor, 0
    try:
        while batches is None or done < batches:
            box_ids = list(boxes.filter(box_id__gt=cursor).order_by("box_id").values_list("box_id", flat=True)[:batch_size])
            if not box_ids:
                break
            # Under the company's outbox lock, skipping boxes relabelled since they were read: their
            # own outbox rows bring the newer label, and this batch never writes an older one over it.
            index_current(company_id=model_set.company_id, box_ids=box_ids, targets=[target])
            # Conditional: a second builder of the same set (a resumed one) advances it only once.
            if not ModelSet.objects.filter(pk=model_set.pk, index_cursor=cursor).update(
                    index_cursor=box_ids[-1], indexed_boxes=F("indexed_boxes") + len(box_ids),
                    total_boxes=boxes.count(), index_heartbeat_at=timezone.now()):
                raise ModelSetStateError(f"model set {model_set.name}: another build moved its cursor past {cursor}")
            cursor, done = box_ids[-1], done + 1
            log(f"re-index {model_set.name}: {cursor} (batch {done})")
        else:
            model_set.refresh_from_db()
            return model_set
    except Exception as error:
        ModelSet.objects.filter(pk=model_set.pk).update(index_error=f"{type(error).__name__}: {error}"[:2000])
        raise
    space.flush()  # Qdrant Edge builds its HNSW graph here; a server indexes by itself
    ModelSet.objects.filter(pk=model_set.pk, index_state=ModelSet.IndexState.BUILDING).update(
        index_state=ModelSet.IndexState.READY, index_heartbeat_at=timezone.now(), index_error="",
        total_boxes=F("indexed_boxes"))
    model_set.refresh_from_db()
    return model_set


def _chunks(ids: Sequence[int], size: int = IDS_PER_QUERY) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
