"""The v3 reranker: its features, what it learns, saving it, and that training never sees the future."""
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from inference.candidates import Candidate
from inference.pipeline import PipelineConfig
from inference.replay import ReplayFrame, collect_reranker_rows, run_replay
from inference.reranker import FEATURES, Reranker, TrainingRows, candidate_features, fit_reranker

BOXES = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.1, 0.2]])


def column(name):
    return FEATURES.index(name)


def test_features_hold_rank_gaps_components_and_geometry():
    candidates = [
        [Candidate(5, 1.0, {"knn": 0.7, "realgram": 0.3}), Candidate(6, 0.8, {"knn": 0.8})],
        [],
        [Candidate(9, 0.5, {"knn": 0.5, "tracking": 0.2})],
    ]
    features = candidate_features(candidates, np.vstack([BOXES, [[0, 0, 1, 1]]]), aspect=2.0)
    assert features.values.shape == (3, len(FEATURES))
    assert features.box_index.tolist() == [0, 0, 2] and features.product_ids.tolist() == [5, 6, 9]
    first, second, third = features.values
    assert second[column("rank")] == 1 and second[column("score_gap")] == pytest.approx(0.2)
    assert first[column("knn_rank")] == 1 and first[column("knn_gap")] == pytest.approx(0.1)
    assert first[column("realgram")] == 0.3 and second[column("realgram")] == 0.0
    assert third[column("tracking")] == 0.2 and third[column("candidates")] == 1
    assert first[column("box_aspect")] == pytest.approx(0.3 * 2.0 / 0.4)


def synthetic_rows(boxes=400, seed=0):
    """Boxes whose truth is the candidate with the most shelf evidence, not the best kNN score."""
    rng = np.random.default_rng(seed)
    rows = TrainingRows()
    for frame in range(boxes // 10):
        candidates, truth = [], []
        for _ in range(10):
            knn = rng.uniform(0.5, 0.9, 3)
            realgram = rng.uniform(0, 0.3, 3)
            ranked = sorted((Candidate(p, float(k), {"knn": float(k), "realgram": float(r)})
                             for p, k, r in zip((1, 2, 3), knn, realgram)), key=lambda c: -c.score)
            candidates.append(ranked)
            truth.append(1 + int(np.argmax(realgram)))
        rows.add(candidate_features(candidates, np.tile(BOXES[0], (10, 1)), 1.0), np.array(truth), frame, float(frame))
    return rows


def test_the_model_learns_what_the_hand_weighted_score_misses():
    reranker = fit_reranker(synthetic_rows())
    assert reranker.trained_until == 39.0 and reranker.metrics["rows"] == 1200
    box = [Candidate(1, 0.9, {"knn": 0.9, "realgram": 0.0}), Candidate(2, 0.6, {"knn": 0.6, "realgram": 0.28})]
    [ranked] = reranker.rerank([box], BOXES[:1], 1.0)
    assert [c.product_id for c in ranked] == [2, 1]
    assert ranked[0].score == ranked[0].components["reranker"] > 0.5
    assert ranked[0].components["pre_rerank"] == 0.6 and ranked[0].components["realgram"] == 0.28


def test_saved_and_loaded_models_predict_the_same(tmp_path):
    reranker = fit_reranker(synthetic_rows())
    features = candidate_features([[Candidate(1, 0.9, {"knn": 0.9}), Candidate(2, 0.5, {"knn": 0.5})]], BOXES[:1], 1.0)
    loaded = Reranker.load(reranker.save(tmp_path / "reranker.json"))
    assert loaded.probabilities(features) == pytest.approx(reranker.probabilities(features))
    assert loaded.trained_until == reranker.trained_until and loaded.metrics == reranker.metrics


def test_loading_anything_else_says_what_and_where(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="bad.json: not a reranker model"):
        Reranker.load(bad)
    with pytest.raises(ValueError, match="missing.json"):
        Reranker.load(tmp_path / "missing.json")


def test_rows_without_a_wrong_candidate_cannot_train():
    rows = TrainingRows()
    rows.add(candidate_features([[Candidate(1, 0.9, {"knn": 0.9})]], BOXES[:1], 1.0), np.array([1]), 1, 0.0)
    with pytest.raises(ValueError, match="1 positives"):
        fit_reranker(rows)


T0 = datetime(2024, 3, 4, 9, tzinfo=UTC)
RED, GREEN, BLUE = np.eye(3)


def replay_frame(frame_id, minutes, truth):
    return ReplayFrame(frame_id=frame_id, file_name=f"{frame_id}.jpg", store="s", camera="c", shelf="c",
                       captured_at=T0 + timedelta(minutes=minutes), width=100, height=100,
                       boxes=np.array([(0, 0, 10, 10), (20, 0, 10, 10)], np.float64), truth=np.array(truth, np.int64))


def test_a_label_made_after_a_frame_never_reaches_its_features():
    vectors = {1: [RED, GREEN], 2: [RED, GREEN], 3: [RED, GREEN], 4: [RED, BLUE]}
    earlier = [replay_frame(1, 0, (1, 2)), replay_frame(2, 10, (1, 2)), replay_frame(3, 20, (1, 2))]

    def rows_of(frames):
        rows = collect_reranker_rows(frames, lambda f: np.array(vectors[f.frame_id]), PipelineConfig.named("v2"),
                                     dim=3, train=lambda f: True, annotate_every=1)
        return {int(ids[0]): values for ids, values in zip(rows.frame_ids, rows.values)}

    alone = rows_of(earlier)
    # Later frames, with labels that contradict everything before them, change nothing earlier.
    later = [replay_frame(4, 30, (3, 3)), replay_frame(5, 40, (2, 1))]
    vectors[5] = [RED, GREEN]
    together = rows_of(earlier + later)
    assert alone.keys() == {2, 3} and together.keys() == {2, 3, 4, 5}
    for frame_id in alone:
        assert np.array_equal(alone[frame_id], together[frame_id])
    # And they do reach the frames after them.
    assert not np.array_equal(together[5], together[3])


def test_v3_without_a_model_ranks_as_v2_and_with_one_uses_it():
    frames = [replay_frame(i, 10 * i, (1, 2)) for i in range(1, 6)]
    vectors = lambda f: np.stack([RED, GREEN])  # noqa: E731
    v2, untrained = run_replay(frames, vectors, [PipelineConfig.named("v2"), PipelineConfig.named("v3")], dim=3)
    assert untrained.accuracy == v2.accuracy
    seen = []
    run_replay(frames, vectors, [PipelineConfig.named("v3")], dim=3, reranker=fit_reranker(synthetic_rows()),
               on_ranked=lambda frame, moment, index, ranked: seen.extend(ranked))
    assert any("reranker" in c.components for box in seen for c in box)
