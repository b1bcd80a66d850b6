"""A company's model sets: registering a round's folder, building its collection without downtime,
switching to it in one row, and rolling back.

While a set's collection is built, pre-labelling keeps searching the collection of the set the
company is on; the outbox writes every label change to both (and to the previous set's, kept for
a rollback), so the new collection is complete when the build's cursor reaches the last labelled
box, and the switch is a single conditional update of the company's row.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotator import engines
from annotator.models import Company, Label, ModelSet, ModelVersion
from annotator.services import search_index
from annotator.services.serving import Target
from inference.model_set import ModelSet as ModelSetFolder

logger = logging.getLogger(__name__)


class ModelSetStateError(ValueError):
    """A switch, rollback or build that the set's or company's state does not allow."""


def register(*, company: Company, folder) -> ModelSet:
    """The database row of a model set folder a round wrote for ``company``."""
    loaded = ModelSetFolder.load(folder)
    embedder, _ = ModelVersion.objects.get_or_create(
        kind=ModelVersion.Kind.EMBEDDER, name=loaded.embedder_name,
        defaults={"path": str(loaded.embedder_path), "metrics": loaded.figures.get("gate", {})})
    return ModelSet.objects.create(company=company, name=loaded.name, folder=str(loaded.folder), embedder=embedder,
                                   version=loaded.stages.version, manifest=loaded.manifest())


def labelled_boxes(*, company_id: int):
    return Label.objects.filter(is_current=True, product__isnull=False, box__frame__company_id=company_id)


def build_index(*, model_set: ModelSet, batch_size: int | None = None, log: Callable[[str], None] = logger.info,
                batches: int | None = None) -> ModelSet:
    """Put every labelled crop of the set's company into the set's collection, in box-id order, a
    batch at a time, each batch's end stored as the cursor: after a crash the build resumes from the
    cursor. Labels changed meanwhile reach the collection through the outbox (which writes to sets
    being built). ``batches``: stop after that many (tests). Returns the set, ready when done."""
    batch_size = batch_size or settings.LEARN_REINDEX_BATCH
    target = Target(model_set)
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
            search_index.index_current(company_id=model_set.company_id, box_ids=box_ids, targets=[target])
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


@transaction.atomic
def switch(*, model_set: ModelSet) -> Company:
    """Point the set's company at it: one conditional update of the company's row, from the set it
    was on (which becomes the set's ``previous``, for a rollback). Only a ready collection is served."""
    model_set.refresh_from_db()
    if model_set.index_state != ModelSet.IndexState.READY:
        raise ModelSetStateError(f"model set {model_set.name}: its collection is {model_set.get_index_state_display()}, "
                                 "not ready; it cannot serve yet")
    company = Company.objects.get(pk=model_set.company_id)
    if company.model_set_id == model_set.pk:
        return company
    if not Company.objects.filter(pk=company.pk, model_set_id=company.model_set_id).update(model_set=model_set):
        raise ModelSetStateError(f"{company}: its model set changed while switching; try again")
    ModelSet.objects.filter(pk=model_set.pk).update(promoted_at=timezone.now(), rolled_back_at=None,
                                                    previous_id=company.model_set_id)
    company.refresh_from_db()
    return company


@transaction.atomic
def rollback(*, company: Company) -> Company:
    """Return the company to the set its current one replaced (the base set for the first); its
    collection was kept current by the outbox meanwhile."""
    company.refresh_from_db()
    current = company.model_set
    if current is None:
        raise ModelSetStateError(f"{company}: already on the base model set; nothing to roll back")
    target = current.previous
    if not Company.objects.filter(pk=company.pk, model_set_id=current.pk).update(model_set=target):
        raise ModelSetStateError(f"{company}: its model set changed meanwhile; try again")
    ModelSet.objects.filter(pk=current.pk).update(rolled_back_at=timezone.now())
    company.refresh_from_db()
    return company
