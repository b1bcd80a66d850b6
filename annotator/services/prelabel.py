"""Pre-labelling a frame: detect (when the frame has no boxes yet and a detector is configured),
then the pipeline's ranked candidates for every box, stored as Predictions."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction

from annotator import engines, selectors
from annotator.models import Box, Frame, ModelVersion, PipelineVersion, Prediction
from annotator.services import search_index
from annotator.services.embeddings import crop_vectors, current_embedder_version, store_embeddings
from annotator.services.frames import set_status
from annotator.services.workspace import schedule_frame
from inference.candidates import frame_confidence
from inference.images import open_image
from inference.pipeline import FrameContext, PipelineConfig, normalise_boxes
from inference.tracking import PreviousFrame


def current_pipeline_version(config: PipelineConfig | None = None) -> PipelineVersion:
    """The version that ``config`` (the configured pipeline's by default) records its predictions
    under: its name, digested with its hyperparameters and models (the reranker's training included)."""
    pipeline = engines.pipeline()
    config = config or pipeline.config
    embedder_version = current_embedder_version()
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
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    version, _ = PipelineVersion.objects.get_or_create(
        name=config.version, config_digest=digest,
        defaults={"config": settings_of, "embedder": embedder_version, "detector": detector_version},
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
        with frame.image.open("rb") as handle:
            image = open_image(handle.read())
        boxes = list(frame.boxes.order_by("pk"))
        detector = engines.detector()
        if not boxes and detector is not None:
            boxes = Box.objects.bulk_create(
                Box(frame=frame, x=d.x, y=d.y, w=d.w, h=d.h, detector_score=d.score, source=Box.Source.DETECTOR)
                for d in detector.detect(image)
            )
        pipeline = engines.pipeline()
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
        version = current_pipeline_version(config)
        bboxes = [box.bbox for box in boxes]
        vectors = pipeline.embed_boxes(image, bboxes)
        if config.tracking is not None:
            previous = previous_frame(frame=frame, embedder_version=version.embedder)
        ranked = pipeline.rank(vectors, bboxes, context, history, previous)
        with transaction.atomic():
            store_embeddings(boxes=boxes, vectors=vectors, embedder_version=version.embedder)
            Frame.objects.filter(pk=frame.pk).update(confidence=frame_confidence(ranked))
            Prediction.objects.filter(box__frame=frame, pipeline_version=version).delete()
            Prediction.objects.bulk_create(
                Prediction(
                    box=box, pipeline_version=version,
                    product_id=candidates[0].product_id if candidates else None,
                    score=candidates[0].score if candidates else None,
                    candidates=[c.as_dict() for c in candidates],
                )
                for box, candidates in zip(boxes, ranked)
            )
            if not labelled:
                set_status(frame=frame, status=Frame.Status.READY)
                schedule_frame(frame=frame)
    except Exception as error:
        if not labelled:
            set_status(frame=frame, status=Frame.Status.FAILED, reason=f"{type(error).__name__}: {error}"[:2000])
        raise
    return frame


def previous_frame(*, frame: Frame, embedder_version: ModelVersion) -> PreviousFrame | None:
    """The camera's previous frame for tracking, with its boxes' embeddings (stored by its own
    pre-labelling; a frame imported with its labels is embedded once, here)."""
    state = selectors.previous_frame_state(frame=frame)
    if state is None or not state.boxes:
        return None
    previous = state.frame
    return PreviousFrame(
        boxes=normalise_boxes([box.bbox for box in state.boxes], previous.width, previous.height),
        vectors=crop_vectors(frame=previous, boxes=state.boxes, embedder_version=embedder_version),
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
    """Send the frame to a pre-labelling worker."""
    from annotator.tasks import prelabel_frame as prelabel_task

    prelabel_task.delay(frame_id)
