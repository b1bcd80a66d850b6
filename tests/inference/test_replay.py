"""The replay: time order, no look-ahead, the annotation schedule, and the scores."""
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from inference.pipeline import PipelineConfig
from inference.realgram import RealgramConfig
from inference.replay import ReplayFrame, replay_order, run_replay

T0 = datetime(2024, 3, 4, 9, tzinfo=UTC)
BOX_A, BOX_B = (0, 0, 10, 10), (20, 0, 10, 10)
RED, GREEN = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])


def frame(frame_id, camera="cam-1", minutes=None, truth=(1, 2), boxes=(BOX_A, BOX_B), name=None, shelf=None, store="s1"):
    return ReplayFrame(
        frame_id=frame_id, file_name=name or f"{frame_id:03d}.jpg", store=store, camera=camera, shelf=shelf or camera,
        captured_at=None if minutes is None else T0 + timedelta(minutes=minutes), width=100, height=100,
        boxes=np.array(boxes, np.float64), truth=np.array(truth, np.int64),
    )


def colour_vectors(mapping):
    """Each product id gets its own direction; a frame's crops look like their truth unless overridden."""
    def vectors(f):
        if f.frame_id in mapping:
            return np.array(mapping[f.frame_id], np.float64)
        return np.stack([RED if t == 1 else GREEN for t in f.truth])
    return vectors


def test_replay_order_places_untimed_frames_after_their_camera_predecessor():
    frames = [frame(1, minutes=10), frame(2, name="b.jpg"), frame(3, minutes=0), frame(4, name="a.jpg"),
              frame(5, camera="cam-2", minutes=5), frame(6, camera="cam-3", name="z.jpg")]
    order = [(f.frame_id, m) for f, m in replay_order(frames)]
    assert [frame_id for frame_id, _ in order] == [3, 5, 1, 4, 2, 6]
    assert order[-1][1] == float("inf")


def test_each_frame_is_predicted_only_from_earlier_annotations():
    frames = [frame(1, minutes=0), frame(2, minutes=1), frame(3, minutes=2)]
    [score] = run_replay(frames, colour_vectors({}), [PipelineConfig()], dim=3, annotate_every=2)
    # Frame 1: empty search space (no prediction); frames 2 and 3 learn from frame 1's annotation.
    assert score.boxes == 6 and score.predicted_boxes == 4
    assert score.accuracy == pytest.approx(4 / 6)
    assert score.first_frames_accuracy == 0.0


def test_the_schedule_decides_what_is_annotated():
    # Frame 2 relabels the shelf: its truth is swapped but its crops look as before. Annotated every
    # frame, frame 3 (swapped too) is found through frame 2's labels; annotated every 2nd, it is not.
    red2, green2 = np.array([0.95, 0.1, 0]), np.array([0.1, 0.95, 0])  # nearer frame 2's crops than frame 1's
    swapped = {2: [red2, green2], 3: [red2, green2]}
    frames = [frame(1, minutes=0), frame(2, minutes=1, truth=(2, 1)), frame(3, minutes=2, truth=(2, 1))]
    every = run_replay(frames, colour_vectors(swapped), [PipelineConfig()], dim=3, annotate_every=1)[0]
    second = run_replay(frames, colour_vectors(swapped), [PipelineConfig()], dim=3, annotate_every=2)[0]
    assert every.accuracy == pytest.approx(2 / 6)
    assert second.accuracy == pytest.approx(0.0)


def test_flicker_counts_label_changes_on_matched_boxes_with_the_same_truth():
    frames = [frame(1, minutes=0), frame(2, minutes=1), frame(3, minutes=2), frame(4, minutes=3)]
    # Predictions: frame 1 none (not a jump); frame 2 (2, 2); frame 3 (1, 2); frame 4 (1, 2).
    [score] = run_replay(frames, colour_vectors({2: [GREEN, GREEN]}), [PipelineConfig()], dim=3, annotate_every=2)
    assert score.matched_boxes == 4
    assert score.flicker_rate == pytest.approx(1 / 4)
    moved = [frame(1, minutes=0), frame(2, minutes=1, boxes=(BOX_A, (60, 60, 10, 10)))]
    assert run_replay(moved, colour_vectors({}), [PipelineConfig()], dim=3)[0].matched_boxes == 0


def test_scores_per_store_macro_and_without_the_majority_class():
    frames = [frame(1, minutes=0, truth=(1, 1)), frame(2, minutes=1, truth=(1, 2)),
              frame(3, camera="cam-2", store="s2", minutes=2, truth=(1, 1))]
    vectors = colour_vectors({1: [RED, RED], 2: [RED, RED], 3: [RED, RED]})
    [score] = run_replay(frames, vectors, [PipelineConfig()], dim=3, annotate_every=1)
    # Predictions: frame 1 none; frame 2: 1, 1 (truth 1, 2); frame 3: 1, 1.
    assert score.accuracy == pytest.approx(3 / 6)
    assert score.accuracy_per_store == {"s1": pytest.approx(1 / 4), "s2": 1.0}
    assert score.macro_accuracy == pytest.approx((3 / 5 + 0) / 2)
    assert score.accuracy_without_majority == 0.0


def test_realgram_pipeline_uses_the_shelf_and_replays_are_deterministic():
    # Products 1 and 3 look identical (RED); on this shelf product 3 was annotated at box A.
    frames = [frame(1, minutes=0, truth=(3, 2), shelf="x"), frame(2, camera="cam-2", minutes=1, truth=(1, 2), shelf="y"),
              frame(3, minutes=60, truth=(3, 2), shelf="x")]
    configs = [PipelineConfig.named("v0"), PipelineConfig.named("v1", realgram=RealgramConfig(weight=0.3))]
    vectors = colour_vectors({1: [RED, GREEN], 2: [RED, GREEN], 3: [RED, GREEN]})
    v0, v1 = run_replay(frames, vectors, configs, dim=3, annotate_every=1)
    # Frame 3's red crop: kNN ties products 1 and 3 and the lower id wins; realgram picks 3, annotated
    # at this spot of this shelf.
    assert v0.accuracy == pytest.approx(2 / 6)
    assert v1.accuracy == pytest.approx(3 / 6)
    again = run_replay(frames, vectors, configs, dim=3, annotate_every=1)
    assert [s.as_dict() for s in again] == [v0.as_dict(), v1.as_dict()]


def test_scored_filter_keeps_other_frames_in_the_search_space():
    frames = [frame(1, minutes=0, shelf="train"), frame(2, camera="cam-2", minutes=1, shelf="report")]
    [score] = run_replay(frames, colour_vectors({}), [PipelineConfig()], dim=3, scored=lambda f: f.shelf == "report")
    assert score.boxes == 2 and score.accuracy == 1.0


def test_with_a_detector_missed_boxes_count_and_matched_ones_take_the_detection_prediction():
    frames = [frame(1, minutes=0), frame(2, minutes=1)]
    # The detector finds box A (slightly shifted) and a false box, but misses box B.
    detected_boxes = np.array([[1, 0, 10, 10], [60, 60, 10, 10]], np.float64)

    def detections(f):
        return detected_boxes, np.stack([RED, GREEN])

    [score] = run_replay(frames, colour_vectors({}), [PipelineConfig()], dim=3, annotate_every=1,
                         detections=detections)
    assert score.detection_recall == pytest.approx(0.5)
    # Frame 2's box A is found and right; frame 1 had nothing to search; box B is missed twice.
    assert score.matched_accuracy == pytest.approx(0.5)
    assert score.accuracy == pytest.approx(1 / 4)
