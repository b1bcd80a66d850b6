"""The learning loop's rounds: a company's labels become a candidate model set, gated against the
promoted one, promoted (re-indexed, then switched) only if it wins.

A round is a ``LearningRound`` row: at most one running per company (a database constraint), its
stage and progress written as it goes, its heartbeat refreshed, so a round whose worker died is seen
as stalled and a new round may take over. Only the company's own labels are read: no company's
labels ever train another's model.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotator import engines
from annotator.models import Company, Frame, Label, LearningRound, ModelSet
from annotator.services import model_sets, search_index
from annotator.services.dispatch import send_task
from annotator.services.prelabel_queue import PRELABEL_TASK
from annotator.services.training_data import local_image
from inference.config import ConfigError
from inference.learning import LearningConfig, RoundData, Served, run_round
from inference.replay import ReplayFrame, replay_order

logger = logging.getLogger(__name__)


class LearningError(ValueError):
    """A round that cannot start or run; the message says why."""


def split_frames(frames: Sequence[ReplayFrame], *, cut_off: datetime | None = None,
                 gate_shelves: re.Pattern | None = None, gate_share: float | None = None) -> tuple[set[int], set[int]]:
    """(train, gate) frame ids. With ``gate_shelves`` the shelves matching it gate and the others
    train (a dataset's held-out shelves); else a time split in the replay's order: frames taken
    before ``cut_off`` train and the rest gate, the cut-off defaulting to the moment that leaves the
    latest ``gate_share`` of the frames to the gate. A frame without a capture time takes its camera
    predecessor's (``inference.replay.replay_order``)."""
    if gate_shelves is not None:
        gate = {f.frame_id for f in frames if gate_shelves.search(f.shelf)}
        return {f.frame_id for f in frames} - gate, gate
    ordered = replay_order(frames)
    if cut_off is None:
        share = settings.LEARN_GATE_SHARE if gate_share is None else gate_share
        first_gate = max(1, int(round(len(ordered) * (1 - share))))
        return ({f.frame_id for f, _ in ordered[:first_gate]}, {f.frame_id for f, _ in ordered[first_gate:]})
    train = {f.frame_id for f, moment in ordered if moment < cut_off.timestamp()}
    return train, {f.frame_id for f, _ in ordered} - train


def learning_config(**overrides) -> LearningConfig:
    """The round's configuration: ``LEARN_CONFIG``'s fields, the settings' budget and margin, then
    ``overrides`` (None values left out). A field LearningConfig does not have is a LearningError."""
    fields = {"budget_minutes": settings.LEARN_BUDGET_MINUTES, "margin": settings.LEARN_PROMOTION_MARGIN,
              **settings.LEARN_TRAINING, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return LearningConfig.from_dict(fields)
    except ConfigError as error:
        raise LearningError(f"LEARN_CONFIG: {error}") from None


def company_frames(*, company: Company, cache: Path) -> tuple[list[ReplayFrame], dict[int, Path]]:
    """The company's labelled frames as replay frames (truth = each box's current product; deleted
    boxes left out) and a local path to each image. Only this company's rows are read."""
    labels = (
        Label.objects.filter(is_current=True, product__isnull=False, box__frame__company=company,
                             box__frame__status=Frame.Status.LABELLED)
        .select_related("box__frame__camera__store")
        .order_by("box__frame_id", "box_id")
    )
    by_frame: dict[int, list[Label]] = {}
    for label in labels:
        by_frame.setdefault(label.box.frame_id, []).append(label)
    frames, paths = [], {}
    for frame_id, frame_labels in by_frame.items():
        frame = frame_labels[0].box.frame
        paths[frame_id] = local_image(frame=frame, cache_dir=cache / "frames")
        frames.append(ReplayFrame(
            frame_id=frame_id, file_name=frame.original_name or frame.image.name, store=frame.camera.store.code, camera=frame.camera.code,
            shelf=str(frame.shelf_id), captured_at=frame.captured_at, width=frame.width, height=frame.height,
            boxes=np.array([label.box.bbox for label in frame_labels], np.float64).reshape(-1, 4),
            truth=np.array([label.product_id for label in frame_labels], np.int64),
        ))
    return frames, paths


def served_base() -> Served:
    """The base set: the configured embedder (ImageNet EfficientNet-Lite0 by default) and stages."""
    base = engines.pipeline()
    return Served(engines.base_model_set(), base.embedder, base.reranker)


def served_for(company: Company) -> Served:
    """What pre-labels the company's frames now: its promoted set, or the base set."""
    if company.model_set_id is None:
        return served_base()
    loaded = engines.model_set_engines(company.model_set.folder)
    return Served(loaded.model_set, loaded.embedder, loaded.pipeline.reranker)


def start_round(*, company: Company, budget_minutes: float, cut_off: datetime | None, command: str) -> LearningRound:
    """A new running round for the company. A round still running refuses it, unless its heartbeat
    is older than ``LEARN_STALL_MINUTES`` (its worker died): that one is marked failed first."""
    stale = timezone.now() - timedelta(minutes=settings.LEARN_STALL_MINUTES)
    LearningRound.objects.filter(
        company=company, state__in=[LearningRound.State.RUNNING, LearningRound.State.INDEXING], heartbeat_at__lt=stale,
    ).update(state=LearningRound.State.FAILED, finished_at=timezone.now(),
             message=f"stalled: no progress for {settings.LEARN_STALL_MINUTES} minutes (its worker died?)")
    try:
        with transaction.atomic():
            return LearningRound.objects.create(
                company=company, budget_minutes=budget_minutes, cut_off=cut_off, command=command,
                baseline=company.model_set, stage="starting")
    except IntegrityError:
        running = LearningRound.objects.filter(
            company=company, state__in=[LearningRound.State.RUNNING, LearningRound.State.INDEXING]).first()
        raise LearningError(f"{company}: round {running.pk if running else '?'} is still running "
                            f"(started {running.started_at:%Y-%m-%d %H:%M} )" if running else
                            f"{company}: a round is still running") from None


def report_progress(learning_round: LearningRound) -> Callable[[str, float], None]:
    def report(stage: str, fraction: float) -> None:
        LearningRound.objects.filter(pk=learning_round.pk).update(
            stage=stage, progress=round(fraction, 4), heartbeat_at=timezone.now())

    return report


def run_learning_round(*, company: Company, until: datetime | None = None, gate_shelves: re.Pattern | None = None,
                       config: LearningConfig | None = None, command: str = "",
                       log: Callable[[str], None] = logger.info) -> LearningRound:
    """One round for ``company``: train on its labels before the cut-off, gate on the rest against its
    promoted set, and, if the candidate wins, re-index and switch the company to it. Returns the
    finished round (promoted, rejected or failed, with its report)."""
    config = config or learning_config()
    cache = settings.VAR_DIR / "cache"
    frames, paths = company_frames(company=company, cache=cache)
    if len(frames) < settings.LEARN_MIN_FRAMES:
        raise LearningError(f"{company}: {len(frames)} labelled frames; a round needs {settings.LEARN_MIN_FRAMES}")
    train, gate = split_frames(frames, cut_off=until, gate_shelves=gate_shelves)
    moments = [f.captured_at for f in frames if f.frame_id in gate and f.captured_at]
    cut_off = until or (min(moments) if moments and gate_shelves is None else None)
    if not train or not gate:
        raise LearningError(f"{company}: the cut-off {cut_off} leaves {len(train)} frames to train on and "
                            f"{len(gate)} to gate on; both need some")
    learning_round = start_round(company=company, budget_minutes=config.budget_minutes, cut_off=cut_off,
                                 command=command)
    progress = report_progress(learning_round)
    folder = settings.VAR_DIR / "models" / f"company-{company.pk}" / f"round-{learning_round.pk}-{timezone.now():%Y%m%dT%H%M%S}"
    data = RoundData(frames, paths, train, gate, cut_off=cut_off,
                     description=f"Company {company.name}: {len(frames)} labelled frames of its own, no other "
                                 f"company's labels.")
    try:
        result = run_round(data, promoted=served_for(company), out=folder, config=config, command=command,
                           cache=cache, log=log, progress=progress)
        candidate = model_sets.register(company=company, folder=result.folder)
    except Exception as error:
        LearningRound.objects.filter(pk=learning_round.pk).update(
            state=LearningRound.State.FAILED, finished_at=timezone.now(),
            message=f"{type(error).__name__}: {error}"[:2000])
        raise
    state = LearningRound.State.INDEXING if result.promoted else LearningRound.State.REJECTED
    LearningRound.objects.filter(pk=learning_round.pk).update(
        candidate=candidate, report=result.report, state=state, stage="re-indexing" if result.promoted else "done",
        message=result.reasons[0], heartbeat_at=timezone.now(),
        finished_at=None if result.promoted else timezone.now())
    if result.promoted:
        try:
            promote(learning_round=learning_round, model_set=candidate, log=log)
        except Exception as error:
            # E.g. the embedded search space is owned by the worker: the worker builds and switches.
            log(f"re-index handed to the worker ({type(error).__name__}: {error})")
            send_task(model_sets.REINDEX_TASK, candidate.pk)
    learning_round.refresh_from_db()
    return learning_round


def promote(*, learning_round: LearningRound | None, model_set: ModelSet, log: Callable[[str], None] = logger.info) -> None:
    """Build the set's collection (resumable) and switch its company to it, then queue its frames
    waiting for an annotator for pre-labelling again; the round, if any, ends promoted. A crash leaves the set building: ``resume_reindexing`` carries on."""
    search_index.build_index(model_set=model_set, log=log)
    model_sets.switch(model_set=model_set)
    # Frames waiting for an annotator get the new set's suggestions (a submit against the old ones
    # is refused as stale, so the confirm rate counts what was shown).
    waiting = Frame.objects.filter(company_id=model_set.company_id, status=Frame.Status.READY)
    for frame_id in waiting.values_list("pk", flat=True):
        send_task(PRELABEL_TASK, frame_id)
    if learning_round is not None:
        LearningRound.objects.filter(pk=learning_round.pk).update(
            state=LearningRound.State.PROMOTED, stage="done", progress=1.0, finished_at=timezone.now(),
            heartbeat_at=timezone.now())


def promote_by_id(*, model_set_id: int) -> ModelSet:
    """Promote a set by hand (an admin overriding the gate) or finish a promotion whose build
    stopped: build its collection from where it stopped, then switch."""
    try:
        model_set = ModelSet.objects.get(pk=model_set_id)
    except ModelSet.DoesNotExist:
        raise LearningError(f"no model set {model_set_id}") from None
    learning_round = LearningRound.objects.filter(candidate=model_set, state=LearningRound.State.INDEXING).first()
    promote(learning_round=learning_round, model_set=model_set)
    model_set.refresh_from_db()
    return model_set


def resume_stalled_builds(*, older_than: timedelta) -> list[int]:
    """Queue again every build whose heartbeat stopped (its worker died mid re-index)."""
    stale = ModelSet.objects.filter(index_state=ModelSet.IndexState.BUILDING,
                                    index_heartbeat_at__lt=timezone.now() - older_than)
    ids = list(stale.values_list("pk", flat=True))
    for model_set_id in ids:
        send_task(model_sets.REINDEX_TASK, model_set_id)
    return ids


def queue_rounds() -> list[int]:
    """Queue a round for every company with enough labelled frames; returns their ids."""
    companies = [company.pk for company in Company.objects.order_by("pk")
                 if Frame.objects.filter(company=company, status=Frame.Status.LABELLED).count() >= settings.LEARN_MIN_FRAMES]
    for company_id in companies:
        send_task("annotator.tasks.learn_company", company_id)
    return companies


def learn_scheduled(*, company_id: int) -> LearningRound | None:
    """The scheduled round of one company; a company that cannot learn yet is logged and skipped."""
    company = Company.objects.get(pk=company_id)
    try:
        return run_learning_round(company=company, command=f"beat: learn_company({company_id})")
    except LearningError as error:
        logger.info("no learning round for %s: %s", company, error)
        return None
