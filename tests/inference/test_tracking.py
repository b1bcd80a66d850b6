"""Tracking (v2): which boxes continue a previous one, and what is carried forward."""
import numpy as np
import pytest

from inference.candidates import Candidate
from inference.pipeline import FrameContext, PipelineConfig, rank_candidates
from inference.search_space import CropPoint, ExactSearchSpace
from inference.tracking import PreviousFrame, TrackingConfig, apply_tracking, match_tracks

LEFT, RIGHT = (0.0, 0.0, 0.2, 0.5), (0.5, 0.0, 0.2, 0.5)
RED, GREEN, BLUE = np.eye(3)
HOUR = 3600.0
CONFIG = TrackingConfig(min_iou=0.5, min_similarity=0.8, label_weight=0.5, prediction_weight=0.2, max_gap_hours=2)


def previous(products=(7, 8), confirmed=(True, False), vectors=(RED, GREEN), boxes=(LEFT, RIGHT), at=0.0):
    return PreviousFrame(np.array(boxes, np.float64), np.array(vectors, np.float64), np.array(products, np.int64),
                         np.array(confirmed, bool), at)


def test_matched_boxes_carry_a_label_with_more_weight_than_a_prediction():
    tracks = match_tracks(previous(), np.array([RIGHT, LEFT]), np.array([GREEN, RED]), HOUR, CONFIG)
    carried = dict(zip(tracks.current.tolist(), zip(tracks.product_ids.tolist(), tracks.weight.tolist())))
    assert carried == {1: (7, pytest.approx(0.5)), 0: (8, pytest.approx(0.2))}
    assert tracks.similarity == pytest.approx([1.0, 1.0])


def test_a_different_looking_crop_in_the_same_place_is_a_restock_not_a_track():
    tracks = match_tracks(previous(), np.array([LEFT]), np.array([BLUE]), HOUR, CONFIG)
    assert len(tracks) == 1 and tracks.similarity[0] == pytest.approx(0.0)
    assert tracks.weight[0] == 0.0


def test_boxes_that_moved_or_a_stale_previous_frame_carry_nothing():
    moved = match_tracks(previous(), np.array([(0.3, 0.5, 0.2, 0.5)]), np.array([RED]), HOUR, CONFIG)
    assert len(moved) == 0
    stale = match_tracks(previous(), np.array([LEFT]), np.array([RED]), 3 * HOUR, CONFIG)
    assert len(stale) == 0
    out_of_order = match_tracks(previous(at=2 * HOUR), np.array([LEFT]), np.array([RED]), HOUR, CONFIG)
    assert len(out_of_order) == 0


def test_a_deleted_previous_box_carries_nothing():
    tracks = match_tracks(previous(products=(-1, 8)), np.array([LEFT]), np.array([RED]), HOUR, CONFIG)
    assert tracks.weight.tolist() == [0.0]


def test_carried_product_is_boosted_or_joins_the_list_and_other_components_stay():
    candidates = [
        [Candidate(3, 0.9, {"knn": 0.9, "realgram": 0.1}), Candidate(7, 0.6, {"knn": 0.6})],
        [Candidate(3, 0.9, {"knn": 0.9})],
    ]
    tracks = match_tracks(previous(confirmed=(True, True)), np.array([LEFT, RIGHT]), np.array([RED, GREEN]), HOUR, CONFIG)
    ranked = apply_tracking(candidates, tracks, top_k=5)
    assert [c.product_id for c in ranked[0]] == [7, 3]
    assert ranked[0][0].score == pytest.approx(1.1)
    assert ranked[0][0].components == {"knn": 0.6, "tracking": pytest.approx(0.5), "tracking_similarity": 1.0,
                                       "tracking_iou": 1.0, "tracking_confirmed": 1.0}
    assert ranked[0][1].components == {"knn": 0.9, "realgram": 0.1}
    # Product 8 was not among box 1's neighbours: it joins with its tracking score alone.
    assert [(c.product_id, c.score) for c in ranked[1]] == [(3, 0.9), (8, pytest.approx(0.5))]
    assert ranked[1][1].components["knn"] == 0.0
    assert candidates[0][1].score == 0.6  # the input lists are left as they were


def test_previous_frame_arrays_must_agree():
    with pytest.raises(ValueError, match="disagree"):
        PreviousFrame(np.zeros((2, 4)), np.zeros((1, 3)), np.zeros(2, np.int64), np.zeros(2, bool))


def test_v2_carries_the_previous_label_where_v1_follows_the_neighbours():
    space = ExactSearchSpace(3)
    # The search space says "product 3" for a reddish crop, but the camera's last frame had a
    # person confirm product 7 in this very place, looking the same.
    space.upsert([CropPoint(box_id=1, vector=RED, product_id=3, frame_id=1, company_id=1, store_id=1, shelf_id=1,
                            category_id=None, annotated_at=None)])
    context = FrameContext(company_id=1, store_id=1, shelf_id=1, width=100, height=100, captured_at=HOUR)
    crop = np.array([[0.99, 0.1, 0.0]])
    before = previous(products=(7,), confirmed=(True,), vectors=(crop[0],), boxes=(LEFT,))
    boxes = [(0.0, 0.0, 20.0, 50.0)]
    v1 = rank_candidates(crop, boxes, context, None, before, search_space=space, config=PipelineConfig.named("v1"))
    v2 = rank_candidates(crop, boxes, context, None, before, search_space=space, config=PipelineConfig.named("v2"))
    assert v1[0][0].product_id == 3
    assert v2[0][0].product_id == 7 and "tracking" in v2[0][0].components
