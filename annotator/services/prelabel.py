"""Pre-labelling a frame: detect (when the frame has no boxes yet and a detector is configured),
then the pipeline's ranked candidates for every box, stored as Predictions.

A run first claims its frame (a run token and a claim time on the frame, set by a conditional
update) and writes its boxes and predictions only if it still holds the claim, so two runs on one
frame (a task sent twice, a run judged stalled that wakes up) write it once.

The worker's: it loads the models. Sending frames here, retrying and sweeping them is
``services.prelabel_queue``'s, which the web uses."""
from __future__ import annotations

import hashlib
import json
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotator import engines, selectors
from annotator.models import Box, Frame, ModelVersion, PipelineVersion, Prediction
from annotator.services import frame_states, search_index
from annotator.services.embeddings import crop_vectors, store_embeddings
from annotator.services.prelabel_queue import RELEASED
from annotator.services.serving import Serving
from annotator.services.serving import serving as serving_of
from annotator.services.workspace import schedule_frame
from inference.calibration import Calibrator
from inference.candidates import Candidate, frame_confidence
from inference.images import ImageError, open_image
from inference.pipeline import FrameContext, PipelineConfig, normalise_boxes
from inference.quality_gate import FrameSignature, QualityReport, assess, detection_check, signature
from inference.tracking import PreviousFrame


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


class ClaimLost(Exception):
    """Another run holds the frame, or took it over from this run (the stall sweep judged this one
    stalled): this run wrote nothing, and its result, if any, is dropped."""


# The state a frame is in while a run holds it, by the state the run found it in: a frame with a
# result (ready or labelled) keeps it while a new pipeline version pre-labels it again.
ON_CLAIM = {Frame.Status.QUEUED: Frame.Status.PROCESSING, Frame.Status.FAILED: Frame.Status.PROCESSING,
            Frame.Status.PROCESSING: Frame.Status.PROCESSING, Frame.Status.READY: Frame.Status.READY,
            Frame.Status.LABELLED: Frame.Status.LABELLED}
# Where a run that wrote its predictions leaves the frame: a frame submitted meanwhile stays labelled.
ON_SUCCESS = {Frame.Status.PROCESSING: Frame.Status.READY, Frame.Status.READY: Frame.Status.READY,
              Frame.Status.LABELLED: Frame.Status.LABELLED}
# Where a run that failed, or found nothing to do, leaves a frame that keeps its result.
KEEP_RESULT = {Frame.Status.READY: Frame.Status.READY, Frame.Status.LABELLED: Frame.Status.LABELLED}


def run_token(run_id: str | None) -> str:
    """This run's token: unique to the run, prefixed by the task id it runs for (if any)."""
    nonce = uuid.uuid4().hex
    return f"{run_id[:150]}/{nonce}" if run_id else nonce


def claim_frame(*, frame_id: int, token: str, run_id: str | None = None) -> Frame:
    """Claim the frame for the run with ``token`` (a conditional update): a frame nobody holds, one
    whose claim is older than ``PRELABEL_STALL_MINUTES``, or one held by an earlier delivery of the
    same task (``run_id``: the broker gives a task again only once its worker is gone). Raises
    ClaimLost while another run holds it, Frame.DoesNotExist for a frame that is gone."""
    now = timezone.now()
    free = Q(prelabel_token="") | Q(prelabel_claimed_at__lt=now - timedelta(minutes=settings.PRELABEL_STALL_MINUTES))
    if run_id:
        free |= Q(prelabel_token__startswith=f"{run_id[:150]}/")
    if frame_states.step(frame_id=frame_id, steps=ON_CLAIM, where=free, status_reason="",
                         prelabel_token=token, prelabel_claimed_at=now) is None:
        Frame.objects.only("pk").get(pk=frame_id)  # a frame that is gone is not a lost claim
        raise ClaimLost(f"frame {frame_id} is being pre-labelled by another run")
    return Frame.objects.select_related("camera__store").get(pk=frame_id)


def prelabel_frame(*, frame_id: int, run_id: str | None = None) -> Frame:
    """Predict every box of the frame. Idempotent: re-running replaces the frame's predictions of
    this pipeline version. The run first claims the frame (see ``claim_frame``) and writes its
    boxes and predictions only if it still holds the claim; otherwise it raises ClaimLost, having
    written nothing. A failure is recorded on the frame, with its reason, and re-raised; a frame
    that is ready or labelled stays so (its earlier predictions stand). ``run_id``: the Celery task's id."""
    token = run_token(run_id)
    frame = claim_frame(frame_id=frame_id, token=token, run_id=run_id)
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
        gate = QualityGate.for_frame(frame=frame, image=image)
        boxes = list(frame.boxes.order_by("pk"))
        detector = engines.detector()
        detected = not boxes and detector is not None
        if detected:
            # Saved only with the predictions, by a run that still holds the frame: two runs never both add them.
            boxes = [Box(frame=frame, x=d.x, y=d.y, w=d.w, h=d.h, detector_score=d.score, source=Box.Source.DETECTOR)
                     for d in detector.detect(image)]
        if gate is not None and not gate.judge(detections=len(boxes)).passed:
            # Skipped, never queued for annotators; its boxes and predictions are not written.
            if not frame_states.change(frame_id=frame.pk, to=Frame.Status.SKIPPED, expected=[Frame.Status.PROCESSING],
                                       where=Q(prelabel_token=token), **gate.fields(), **RELEASED):
                raise ClaimLost(f"frame {frame.pk} was taken over by another run while the gate judged it")
            frame.status = Frame.Status.SKIPPED
            return frame
        serving = serving_of(company_id=frame.company_id)
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
            if detected and frame.boxes.exists():
                # A person drew boxes on it meanwhile (a ready frame without any): theirs stand.
                frame_states.step(frame_id=frame.pk, steps=KEEP_RESULT, where=Q(prelabel_token=token), **RELEASED)
                state = None
            else:
                # First, so that a run that lost its claim writes nothing, and two runs cannot both write.
                state = frame_states.step(frame_id=frame.pk, steps=ON_SUCCESS, where=Q(prelabel_token=token),
                                          confidence=frame_confidence(ranked),
                                          **(gate.fields() if gate is not None else {}), **RELEASED)
            if state is not None:
                if detected:
                    boxes = Box.objects.bulk_create(boxes)
                store_embeddings(boxes=boxes, vectors=vectors, embedder_version=version.embedder)
                Prediction.objects.filter(box__frame=frame, pipeline_version=version).delete()
                Prediction.objects.bulk_create(
                    Prediction(
                        box=box, pipeline_version=version,
                        product_id=candidates[0].product_id if candidates else None,
                        score=candidates[0].score if candidates else None,
                        probability=probability,
                        candidates=[c.as_dict() for c in candidates],
                        auto_accepted=auto_accepts(probability, serving.auto_accept_threshold),
                    )
                    for box, candidates, probability in zip(boxes, ranked, probabilities)
                )
                if state == Frame.Status.READY:
                    schedule_frame(frame=frame)
        if state is None:
            raise ClaimLost(f"frame {frame.pk} was taken over by another run (or given boxes by a person) "
                            "while this run pre-labelled it; this run wrote nothing")
        frame.status = state
    except ClaimLost:
        raise
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"[:2000]
        # Only while this run holds the frame: a run taken over must not fail a frame another finished.
        if not frame_states.change(frame_id=frame.pk, to=Frame.Status.FAILED, expected=[Frame.Status.PROCESSING],
                                   where=Q(prelabel_token=token), status_reason=reason, **RELEASED):
            frame_states.step(frame_id=frame.pk, steps=KEEP_RESULT, where=Q(prelabel_token=token), **RELEASED)
        raise
    return frame


def auto_accepts(probability: float | None, threshold: float | None) -> bool:
    """Whether a box is pre-confirmed: its calibrated probability is at or above the company's
    threshold. Never without a threshold (auto-accept off) or a calibrated probability (None or NaN)."""
    return threshold is not None and probability is not None and probability >= threshold


class QualityGate:
    """The quality gate's run on one frame (``inference.quality_gate``): its image checks against the
    camera's recent accepted frames, then, once the boxes are known, the detection count against
    theirs. A frame forced through by a QA lead keeps its forced decision and passes."""

    def __init__(self, *, frame: Frame, report: QualityReport, own: FrameSignature,
                 usual_detections: float | None, forced: bool):
        self.frame, self.report, self.own = frame, report, own
        self.usual_detections, self.forced = usual_detections, forced

    @classmethod
    def for_frame(cls, *, frame: Frame, image) -> QualityGate | None:
        """The gate's run for a frame pre-labelled for the first time (or again after a failure or a
        forcing); None with the gate off, or for a ready or labelled frame a new pipeline version
        pre-labels again (it passed once)."""
        if not settings.QUALITY_GATE_ENABLED or frame.status != Frame.Status.PROCESSING:
            return None
        forced = bool(frame.quality and frame.quality.get("forced"))
        if forced:
            own = signature(image)
            report = QualityReport(True, [], {}, forced=True)
            return cls(frame=frame, report=report, own=own, usual_detections=None, forced=True)
        references = selectors.gate_references(frame=frame, limit=settings.QUALITY_GATE_REFERENCES)
        report, own = assess(image, references=[FrameSignature.from_dict(ref.signature) for ref in references])
        usual = float(np.median([ref.boxes for ref in references])) if references else None
        return cls(frame=frame, report=report, own=own, usual_detections=usual, forced=False)

    def judge(self, *, detections: int) -> QualityReport:
        """The decision with the detection-count check added."""
        if not self.forced:
            self.report = detection_check(self.report, detections=detections, usual_detections=self.usual_detections)
        return self.report

    def fields(self) -> dict:
        """What the frame records of the decision: the report (a forced frame keeps the one that
        skipped it, marked forced), the signature of an accepted frame, the reasons of a skipped one."""
        if self.forced:
            return {"quality": {**self.frame.quality, "passed": True, "forced": True},
                    "quality_signature": self.own.as_dict()}
        if self.report.passed:
            return {"quality": self.report.as_dict(), "quality_signature": self.own.as_dict()}
        details = "; ".join(self.report.details.get(reason, reason) for reason in self.report.reasons)
        return {"quality": self.report.as_dict(), "quality_signature": None,
                "status_reason": f"skipped by the quality gate: {details}"[:2000]}


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
