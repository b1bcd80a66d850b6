
import pytest

from inference.realgram import RealgramConfig
from inference.realgram_tuning import tune_realgram
from tests.inference.test_replay import GREEN, RED, colour_vectors, frame


def shelf_frames(shelf, camera, start):
    # Products 1 and 3 look the same; each shelf has 3 at box A: only shelf context can tell them apart.
    return [frame(start + i, camera=camera, shelf=shelf, minutes=start + i, truth=(3, 2)) for i in range(4)]


def frames_and_vectors():
    frames = [frame(1, camera="decoy", shelf="decoy", minutes=0, truth=(1, 2))]
    frames += shelf_frames("a", "cam-a", 10) + shelf_frames("b", "cam-b", 20)
    return frames, colour_vectors({f.frame_id: [RED, GREEN] for f in frames})


def test_tuning_finds_weight_that_helps_and_reports_on_held_out_shelves():
    frames, vectors = frames_and_vectors()
    result = tune_realgram(frames, vectors, dim=3, tune=lambda f: f.shelf == "a", report=lambda f: f.shelf == "b",
                           trials=6, annotate_every=2)
    assert isinstance(result.best, RealgramConfig)
    assert result.report_v0.boxes == result.report_v1.boxes == 8
    assert result.report_v1.accuracy > result.report_v0.accuracy
    again = tune_realgram(frames, vectors, dim=3, tune=lambda f: f.shelf == "a", report=lambda f: f.shelf == "b",
                          trials=6, annotate_every=2)
    assert again.best == result.best


def test_unknown_objective_is_refused():
    frames, vectors = frames_and_vectors()
    with pytest.raises(ValueError, match="unknown objective"):
        tune_realgram(frames, vectors, dim=3, tune=bool, report=bool, trials=1, objective="speed")

