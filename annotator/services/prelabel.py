"""Pre-labelling a frame: detect (when the frame has no boxes yet and a detector is configured),
then the pipeline's ranked candidates for every box, stored as Predictions."""
from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotator import engines, selectors
from annotator.models import Box, Frame, ModelVersion, PipelineVersion, Prediction
from annotator.services import model_sets, search_index
from annotator.services.embeddings import crop_vectors, store_embeddings
from annotator.services.model_sets import Serving
from annotator.services.frames import set_status
from annotator.services.workspace import schedule_frame
from inference.calibration import Calibrator
from inference.candidates import Candidate, frame_confidence
from inference.images import ImageError, open_image
from inference.pipeline import FrameContext, PipelineConfig, normalise_boxes
from inference.tracking import PreviousFrame

logger = logging.getLogger(__name__)


def current_pipeline_version(config: PipelineConfig | None = None, serving: Serving | None = None) -> PipelineVersion:
    """The version that ``config`` (the served pipeline's by default) records its predictions under:
    its name, digested with its hyperparameters and models (the reranker's training included) and the
    company's model set. ``serving``: the company's (the base pipeline by default)."""
    serving = serving or Serving(None, engines.pipeline(), None)
    pipeline = serving.pipeline
    config = config or pipeline.config
    embedder_version = serving.embedder_version()
    settings_of = config.as_dict()
    if config.rerank and pipeline.reranker is not None:
        settings_of["reranker"] = {"trained_until": pipeline.reranker.trained_until, **pipeline.reranker.metrics}
    detector_version = None
    if engines.detector() is not None:
        weights = Path(settings.DETECTOR_WEIGHTS)
        detector_version, _ = ModelVersion.objects.get_or_create(
            kind=ModelVersion.Kind.DETECTOR, name=weights.name, defaults={"path": str(weights)})
    identity = {"config": settings_of, "embedder": embedder_version.name,
                "detector": detector_version.name if detector_version else None}
    if serving.model_set is not None:
        identity["model_set"] = serving.model_set.name
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    version, _ = PipelineVersion.objects.get_or_create(
        name=config.version, config_digest=digest,
        defaults={"config": settings_of, "embedder": embedder_version, "detector": detector_version,
                  "model_set": serving.model_set},
    )
    return version


def prelabel_frame(*, frame_id: int) -> Frame:
    """Predict every box of the frame. Idempotent: re-running replaces the frame's predictions of
    this pipeline version. A failure is recorded on the frame, with its reason, and re-raised."""
    frame = Frame.objects.select_related("camera__store").get(pk=frame_id)
    # A labelled frame may be predicted again (a new pipeline version); it stays labelled.
    labelled = frame.status == Frame.Status.LABELLED
    if not labelled:
        set_status(frame=frame, status=Frame.Status.PROCESSING)
    try:
        # Labels confirmed a moment ago must be searchable for this frame.
        search_index.deliver_outbox(company_id=frame.company_id)
        try:
            with frame.image.open("rb") as handle:
                data = handle.read()
        except FileNotFoundError as error:
            # An ImageError: retrying cannot bring the file back, so the frame fails once, with its reason.
            raise ImageError(f"the image {frame.image.name} is missing from media storage") from error
        image = open_image(data)
        boxes = list(frame.boxes.order_by("pk"))
        detector = engines.detector()
        if not boxes and detector is not None:
            boxes = Box.objects.bulk_create(
                Box(frame=frame, x=d.x, y=d.y, w=d.w, h=d.h, detector_score=d.score, source=Box.Source.DETECTOR)
                for d in detector.detect(image)
            )
        serving = model_sets.serving(company_id=frame.company_id)
        pipeline = serving.pipeline
        moment = frame.captured_at or frame.created_at
        context = FrameContext(
            company_id=frame.company_id, store_id=frame.camera.store_id, shelf_id=frame.shelf_id,
            width=frame.width, height=frame.height, captured_at=moment.timestamp(),
        )
        config = pipeline.config_for(context.captured_at)
        history = previous = None
        if config.realgram is not None:
            history = selectors.shelf_history(
                shelf_id=frame.shelf_id, before=moment, window_days=config.realgram.window_days)
        version = current_pipeline_version(config, serving)
        bboxes = [box.bbox for box in boxes]
        vectors = pipeline.embed_boxes(image, bboxes)
        if config.tracking is not None:
            previous = previous_frame(frame=frame, embedder_version=version.embedder, pipeline=pipeline)
        ranked = pipeline.rank(vectors, bboxes, context, history, previous)
        probabilities = calibrated(ranked, serving.calibrator)
        with transaction.atomic():
            store_embeddings(boxes=boxes, vectors=vectors, embedder_version=version.embedder)
            Frame.objects.filter(pk=frame.pk).update(confidence=frame_confidence(ranked))
            Prediction.objects.filter(box__frame=frame, pipeline_version=version).delete()
            Prediction.objects.bulk_create(
                Prediction(
                    box=box, pipeline_version=version,
                    product_id=candidates[0].product_id if candidates else None,
                    score=candidates[0].score if candidates else None,
                    probability=probability,
                    candidates=[c.as_dict() for c in candidates],
                )
                for box, candidates, probability in zip(boxes, ranked, probabilities)
            )
            if not labelled:
                set_status(frame=frame, status=Frame.Status.READY)
                schedule_frame(frame=frame)
    except Exception as error:
        if not labelled:
            set_status(frame=frame, status=Frame.Status.FAILED, reason=f"{type(error).__name__}: {error}"[:2000])
        raise
    return frame


def calibrated(ranked: list[list[Candidate]], calibrator: Calibrator | None) -> list[float | None]:
    """Each box's calibrated probability that its top-1 is right (None without a calibrator or candidates)."""
    if calibrator is None:
        return [None] * len(ranked)
    top = calibrator.probability([candidates[0].score if candidates else 0.0 for candidates in ranked]).tolist()
    return [p if candidates else None for p, candidates in zip(top, ranked)]


def previous_frame(*, frame: Frame, embedder_version: ModelVersion, pipeline=None) -> PreviousFrame | None:
    """The camera's previous frame for tracking, with its boxes' embeddings (stored by its own
    pre-labelling; a frame imported with its labels is embedded once, here)."""
    state = selectors.previous_frame_state(frame=frame)
    if state is None or not state.boxes:
        return None
    previous = state.frame
    return PreviousFrame(
        boxes=normalise_boxes([box.bbox for box in state.boxes], previous.width, previous.height),
        vectors=crop_vectors(frame=previous, boxes=state.boxes, embedder_version=embedder_version, pipeline=pipeline),
        product_ids=np.asarray(state.product_ids, np.int64),
        confirmed=np.asarray(state.confirmed, bool),
        captured_at=previous.captured_at.timestamp(),
    )


def retry_frame(*, frame: Frame) -> bool:
    """Queue a failed frame for pre-labelling again (after commit). Returns False for a frame that
    has not failed: retrying a queued, processing or finished frame would only duplicate work."""
    updated = Frame.objects.filter(pk=frame.pk, status=Frame.Status.FAILED).update(
        status=Frame.Status.QUEUED, status_reason="")
    if updated:
        transaction.on_commit(lambda: queue_prelabelling(frame_id=frame.pk))
    return bool(updated)


def queue_prelabelling(*, frame_id: int) -> None:
    """Send the frame to a pre-labelling worker. With the broker away the frame stays queued (what
    called this has committed) and ``requeue_stalled_frames`` sends it later."""
    from annotator.tasks import prelabel_frame as prelabel_task

    try:
        prelabel_task.delay(frame_id)
    except Exception as error:  # kombu's OperationalError, or celery's RuntimeError from the result store
        logger.warning("could not queue frame %s for pre-labelling (%s); the stall sweep will", frame_id, error)


def requeue_stalled_frames(*, older_than: timedelta) -> list[int]:
    """Queue again every frame left queued or processing for longer than ``older_than``: its task was
    lost (a worker killed on the filesystem broker, which had already deleted the message; a broker
    away when it was sent) or its worker hangs. Each says so in its reason, and waits ``older_than``
    again before another sweep queues it once more. Returns the frame ids."""
    now = timezone.now()
    with transaction.atomic():
        stalled = Frame.objects.filter(
            status__in=[Frame.Status.QUEUED, Frame.Status.PROCESSING], updated_at__lt=now - older_than)
        # Locked, so a worker finishing one meanwhile is not put back to queued.
        frame_ids = list(stalled.select_for_update(skip_locked=True).values_list("pk", flat=True))
        minutes = round(older_than.total_seconds() / 60)
        Frame.objects.filter(pk__in=frame_ids).update(
            status=Frame.Status.QUEUED, updated_at=now,
            status_reason=f"queued again: not pre-labelled after {minutes} minutes")
    if frame_ids:
        logger.warning("pre-labelling of frames %s stalled; queued again", frame_ids)
    for frame_id in frame_ids:
        queue_prelabelling(frame_id=frame_id)
    return frame_ids
