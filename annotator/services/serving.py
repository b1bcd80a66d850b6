"""Which models serve a company and which collections follow its labels.

A company is served by its promoted model set, or by the base set (the configured ImageNet models)
when it has none. Its labels must reach every collection that may serve it: the one it is on, the
one a rollback returns to, and any being built.
"""
from __future__ import annotations

from dataclasses import dataclass

from annotator import engines
from annotator.models import Company, ModelSet, ModelVersion
from annotator.services.embeddings import current_embedder_version


@dataclass(frozen=True)
class Target:
    """A collection the outbox keeps current: a company's model set, or the base set (None)."""

    model_set: ModelSet | None

    def pipeline(self):
        if self.model_set is None:
            return engines.pipeline()
        return engines.model_set_engines(self.model_set.folder).pipeline

    def embedder_version(self) -> ModelVersion:
        if self.model_set is None:
            return current_embedder_version()
        return self.model_set.embedder


@dataclass(frozen=True)
class Serving:
    """What pre-labels a company's frames: its promoted set's pipeline and calibrator, or the base
    pipeline (``model_set`` None, no calibrator). ``auto_accept_threshold``: the company's (None: off)."""

    model_set: ModelSet | None
    pipeline: object
    calibrator: object | None
    auto_accept_threshold: float | None = None

    def embedder_version(self) -> ModelVersion:
        return self.model_set.embedder if self.model_set else current_embedder_version(self.pipeline)


def serving(*, company_id: int) -> Serving:
    company = Company.objects.select_related("model_set__embedder").get(pk=company_id)
    if company.model_set is None:
        return Serving(None, engines.pipeline(), None, company.auto_accept_threshold)
    loaded = engines.model_set_engines(company.model_set.folder)
    return Serving(company.model_set, loaded.pipeline, loaded.calibrator, company.auto_accept_threshold)


def live_targets(*, company_id: int) -> list[Target]:
    """The collections that must follow the company's labels: the set it is on, the one a rollback
    would return to, and any being built. The base set is one of them while it is either of the first two."""
    company = Company.objects.select_related("model_set__embedder", "model_set__previous__embedder").get(pk=company_id)
    current = company.model_set
    targets = [Target(current), Target(current.previous if current else None)]
    building = ModelSet.objects.filter(company_id=company_id, index_state=ModelSet.IndexState.BUILDING).select_related("embedder")
    targets += [Target(model_set) for model_set in building]
    unique: dict[int | None, Target] = {}
    for target in targets:
        unique.setdefault(target.model_set.pk if target.model_set else None, target)
    return list(unique.values())
