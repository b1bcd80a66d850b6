"""Offline replay: how a pipeline would have done in production, frame by frame, in time order.

Frames are replayed per camera in capture order (file name order where the time is missing). Each
frame is predicted using only what was annotated before it (search space and shelf history); then,
by the annotation schedule, every N-th frame of each camera is annotated with its ground truth. The
crops are the ground-truth boxes, so detector errors do not mix into classification accuracy.

The replay holds its own in-memory search space (``ExactSearchSpace``): it never touches the app's
database or Qdrant, and the same inputs always give the same numbers.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from inference.boxes import match_boxes
from inference.candidates import Candidate
from inference.pipeline import FrameContext, PipelineConfig, normalise_boxes, rank_candidates
from inference.realgram import ShelfHistory
from inference.reranker import Reranker, TrainingRows, candidate_features
from inference.search_space import CropPoint, ExactSearchSpace
from inference.tracking import PreviousFrame

MATCH_IOU = 0.5  # boxes of consecutive frames this much overlapping are the same facing


@dataclass(frozen=True)
class ReplayFrame:
    """One frame of a labelled dataset: where and when it was taken, its boxes and their truth."""

    frame_id: int
    file_name: str
    store: str
    camera: str
    shelf: str
    captured_at: datetime | None
    width: int
    height: int
    boxes: np.ndarray  # (B, 4) x, y, w, h in pixels
    truth: np.ndarray  # (B,) product ids


@dataclass
class PipelineScore:
    """What one pipeline scored on the replay."""

    pipeline: str
    boxes: int = 0
    predicted_boxes: int = 0
    accuracy: float = 0.0
    macro_accuracy: float = 0.0
    accuracy_without_majority: float = 0.0
    accuracy_per_store: dict[str, float] = field(default_factory=dict)
    first_frames_accuracy: float = 0.0
    flicker_rate: float = 0.0
    matched_boxes: int = 0
    detection_recall: float | None = None  # with a detector: share of ground-truth boxes it found
    matched_accuracy: float | None = None  # with a detector: accuracy on the boxes it found

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def replay_order(frames: Sequence[ReplayFrame]) -> list[tuple[ReplayFrame, float]]:
    """Frames in the order production would have seen them, each with the moment used for it.

    Per camera: by capture time, frames without one after them by file name. Across cameras: by
    that moment; a frame without a time takes its camera predecessor's moment (a camera with no
    time at all comes after every timed frame), so the order is total and deterministic."""
    by_camera: dict[tuple[str, str], list[ReplayFrame]] = defaultdict(list)
    for frame in frames:
        by_camera[(frame.store, frame.camera)].append(frame)
    ordered: list[tuple[float, str, str, int, ReplayFrame]] = []
    for (store, camera), camera_frames in by_camera.items():
        camera_frames.sort(key=lambda f: (f.captured_at is None, f.captured_at or datetime.min.replace(tzinfo=UTC), f.file_name))
        moment = float("inf")
        for position, frame in enumerate(camera_frames):
            if frame.captured_at is not None:
                moment = frame.captured_at.timestamp()
            ordered.append((moment, store, camera, position, frame))
    ordered.sort(key=lambda item: item[:4])
    return [(frame, moment) for moment, _store, _camera, _position, frame in ordered]


def run_replay(
    frames: Sequence[ReplayFrame],
    vectors: Callable[[ReplayFrame], np.ndarray],
    pipelines: Sequence[PipelineConfig],
    *,
    dim: int,
    annotate_every: int = 2,
    scored: Callable[[ReplayFrame], bool] | None = None,
    detections: Callable[[ReplayFrame], tuple[np.ndarray, np.ndarray]] | None = None,
    reranker: Reranker | None = None,
    on_ranked: Callable[[ReplayFrame, float, int, list[list[Candidate]]], None] | None = None,
) -> list[PipelineScore]:
    """Replay ``frames`` through each pipeline. ``vectors(frame)`` gives the frame's crop embeddings
    (one row per box). Every pipeline sees the same annotations (the schedule does not depend on
    predictions), so they share one search space and one shelf history. Only frames for which
    ``scored(frame)`` holds count in the scores (all of them by default); every frame still feeds
    the search space, as in production.

    With ``detections(frame) -> (boxes (D, 4), vectors (D, dim))`` the pipelines classify detected
    boxes instead of the ground-truth ones: each ground-truth box takes the prediction of the
    detection matched to it (IoU >= 0.5, one to one), and a missed box counts as unpredicted.

    Tracking pipelines carry the camera's previous frame forward: its truth when it was annotated
    (a person's label), else that pipeline's own top-1 predictions. ``reranker`` is the model of the
    pipelines that re-rank (none: they rank as v2). ``on_ranked(frame, moment, pipeline index,
    candidates)`` sees every frame's ranked candidates before the frame is annotated."""
    if annotate_every < 1:
        raise ValueError("annotate_every must be at least 1")
    space = ExactSearchSpace(dim)
    history_rows: dict[str, list] = defaultdict(list)
    seen_per_camera: dict[tuple[str, str], int] = defaultdict(int)
    previous: dict[tuple[str, str], tuple[ReplayFrame, list[np.ndarray]]] = {}
    tracked: dict[tuple[str, str], list[PreviousFrame]] = {}
    truth_all: list[np.ndarray] = []
    stores_all: list[np.ndarray] = []
    first_all: list[np.ndarray] = []
    detected_all: list[np.ndarray] = []
    predicted_all: list[list[np.ndarray]] = [[] for _ in pipelines]
    flicker = [[0, 0] for _ in pipelines]  # [label changed, matched] over boxes whose truth did not change
    shelf_ids: dict[str, int] = {}
    store_ids: dict[str, int] = {}

    for frame, moment in replay_order(frames):
        camera = (frame.store, frame.camera)
        frame_vectors = vectors(frame)
        shelf_id = shelf_ids.setdefault(frame.shelf, len(shelf_ids) + 1)
        store_id = store_ids.setdefault(frame.store, len(store_ids) + 1)
        context = FrameContext(company_id=1, store_id=store_id, shelf_id=shelf_id, width=frame.width,
                               height=frame.height, captured_at=moment if np.isfinite(moment) else None)
        history = ShelfHistory.from_rows(history_rows[frame.shelf])
        counted = scored is None or scored(frame)
        query_boxes, query_vectors = detections(frame) if detections else (frame.boxes, frame_vectors)
        # For each ground-truth box, the query box whose prediction it takes (-1: missed).
        source = np.arange(len(frame.boxes))
        if detections:
            source = np.full(len(frame.boxes), -1)
            for truth_index, detection_index in match_boxes(frame.boxes, query_boxes, MATCH_IOU):
                source[truth_index] = detection_index
            if counted:
                detected_all.append(source >= 0)
        annotated = seen_per_camera[camera] % annotate_every == 0
        # An annotated frame carries its truth to every pipeline; otherwise each carries its own top-1.
        labelled = PreviousFrame(normalise_boxes(frame.boxes, frame.width, frame.height), frame_vectors, frame.truth,
                                 np.ones(len(frame.truth), bool), context.captured_at) if annotated else None
        query_normalised = normalise_boxes(query_boxes, frame.width, frame.height)
        predictions, carried = [], []
        for index, config in enumerate(pipelines):
            before_frame = tracked[camera][index] if camera in tracked else None
            ranked = rank_candidates(query_vectors, query_boxes, context, history, before_frame, search_space=space,
                                     config=config, reranker=reranker)
            if on_ranked is not None:
                on_ranked(frame, moment, index, ranked)
            top = np.array([c[0].product_id if c else -1 for c in ranked] + [-1], np.int64)
            predictions.append(top[source])
            carried.append(labelled if annotated else PreviousFrame(
                query_normalised, query_vectors, top[:-1], np.zeros(len(query_boxes), bool), context.captured_at))
        tracked[camera] = carried
        if counted:
            truth_all.append(frame.truth)
            stores_all.append(np.full(len(frame.truth), frame.store, dtype=object))
            first_all.append(np.full(len(frame.truth), seen_per_camera[camera] == 0))
            for index, predicted in enumerate(predictions):
                predicted_all[index].append(predicted)

        if counted and camera in previous:
            before, before_predictions = previous[camera]
            for i, j in match_boxes(before.boxes, frame.boxes, MATCH_IOU):
                if before.truth[i] != frame.truth[j]:
                    continue
                for index in range(len(pipelines)):
                    was, now = before_predictions[index][i], predictions[index][j]
                    if was >= 0 and now >= 0:  # a first suggestion is not a jump
                        flicker[index][1] += 1
                        flicker[index][0] += int(was != now)
        previous[camera] = (frame, predictions)

        if annotated:
            annotate(space, history_rows, frame, frame_vectors, moment, shelf_id, store_id)
        seen_per_camera[camera] += 1

    truth = np.concatenate(truth_all) if truth_all else np.zeros(0, np.int64)
    stores = np.concatenate(stores_all) if stores_all else np.zeros(0, object)
    first = np.concatenate(first_all) if first_all else np.zeros(0, bool)
    detected = np.concatenate(detected_all) if detected_all else None
    return [
        score_pipeline(config.version, truth, np.concatenate(predicted) if predicted else np.zeros(0, np.int64),
                       stores, first, *flicker[index], detected=detected)
        for index, (config, predicted) in enumerate(zip(pipelines, predicted_all))
    ]


def collect_reranker_rows(
    frames: Sequence[ReplayFrame],
    vectors: Callable[[ReplayFrame], np.ndarray],
    config: PipelineConfig,
    *,
    dim: int,
    train: Callable[[ReplayFrame], bool],
    annotate_every: int = 2,
) -> TrainingRows:
    """Training rows for the reranker from a replay of ``config`` without its reranking: for every
    frame ``train`` selects, the features of the candidates the reranker would be given, labelled with
    the frame's truth. The features are taken when the frame is predicted, before it or any later
    frame is annotated, so no label reaches the features of a frame taken before it was made."""
    rows = TrainingRows()

    def on_ranked(frame: ReplayFrame, moment: float, _index: int, ranked: list[list[Candidate]]) -> None:
        if train(frame):
            boxes = normalise_boxes(frame.boxes, frame.width, frame.height)
            rows.add(candidate_features(ranked, boxes, frame.width / frame.height), frame.truth, frame.frame_id, moment)

    run_replay(frames, vectors, [replace(config, rerank=False)], dim=dim, annotate_every=annotate_every,
               on_ranked=on_ranked)
    return rows


def annotate(space: ExactSearchSpace, history_rows: dict[str, list], frame: ReplayFrame, vectors: np.ndarray,
             moment: float, shelf_id: int, store_id: int) -> None:
    """The frame's ground truth enters the search space and its shelf's history."""
    annotated_at = datetime.fromtimestamp(moment, UTC) if np.isfinite(moment) else datetime.max.replace(tzinfo=UTC)
    space.upsert([
        CropPoint(box_id=frame.frame_id * 100_000 + index, vector=vectors[index], product_id=int(product),
                  frame_id=frame.frame_id, company_id=1, store_id=store_id, shelf_id=shelf_id, category_id=None,
                  annotated_at=annotated_at)
        for index, product in enumerate(frame.truth)
    ])
    if np.isfinite(moment):
        history_rows[frame.shelf].extend(
            (int(product), tuple(box), moment, frame.frame_id)
            for box, product in zip(normalise_boxes(frame.boxes, frame.width, frame.height), frame.truth)
        )


def score_pipeline(name: str, truth: np.ndarray, predicted: np.ndarray, stores: np.ndarray, first: np.ndarray,
                   flickered: int, matched: int, detected: np.ndarray | None = None) -> PipelineScore:
    correct = predicted == truth
    classes = np.unique(truth)
    majority = classes[np.argmax([np.sum(truth == c) for c in classes])] if len(classes) else None
    minority = truth != majority
    return PipelineScore(
        pipeline=name,
        boxes=int(len(truth)),
        predicted_boxes=int(np.sum(predicted >= 0)),
        accuracy=_mean(correct),
        macro_accuracy=float(np.mean([_mean(correct[truth == c]) for c in classes])) if len(classes) else 0.0,
        accuracy_without_majority=_mean(correct[minority]),
        accuracy_per_store={str(s): _mean(correct[stores == s]) for s in sorted(set(stores.tolist()))},
        first_frames_accuracy=_mean(correct[first]),
        flicker_rate=flickered / matched if matched else 0.0,
        matched_boxes=matched,
        detection_recall=_mean(detected) if detected is not None else None,
        matched_accuracy=_mean(correct[detected]) if detected is not None else None,
    )


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else 0.0


def cached_vectors(frames: Sequence[ReplayFrame], embed: Callable[[ReplayFrame], np.ndarray], cache: Path | None,
                   key: str) -> dict[int, np.ndarray]:
    """Every frame's crop embeddings, computed once per (embedder, dataset) and kept in ``cache``."""
    path = None
    if cache is not None:
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        path = cache / f"embeddings-{digest}.npz"
        if path.exists():
            stored = np.load(path)
            if all(f"frame_{f.frame_id}" in stored for f in frames):
                return {f.frame_id: stored[f"frame_{f.frame_id}"] for f in frames}
    result = {frame.frame_id: embed(frame) for frame in frames}
    if path is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{f"frame_{frame_id}": v for frame_id, v in result.items()})
    return result

