"""A company's model sets: registering a round's folder, asking the learning worker to build its
collection without downtime (``search_index.build_index`` runs there), switching to it in one row,
and rolling back.

While a set's collection is built, pre-labelling keeps searching the collection of the set the
company is on; the outbox writes every label change to both (and to the previous set's, kept for
a rollback), so the new collection is complete when the build's cursor reaches the last labelled
box, and the switch is a single conditional update of the company's row.
"""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from annotator.models import Company, ModelSet, ModelVersion
from annotator.services.dispatch import send_task
from inference.model_set import ModelSet as ModelSetFolder

REINDEX_TASK = "annotator.tasks.reindex_model_set"


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


def queue_promotion(*, model_set: ModelSet) -> None:
    """Ask the learning worker to build the set's collection and switch to it (after commit)."""
    transaction.on_commit(lambda: send_task(REINDEX_TASK, model_set.pk))
