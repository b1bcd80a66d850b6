import json

import pytest

from inference.learning import beats, choose_stages, shortfall
from inference.model_set import ModelSet, ModelSetError, Stages
from inference.replay import PipelineScore


def score(accuracy, no_major=0.8, macro=0.7, first=0.6, flicker=0.1):
    return PipelineScore("v", boxes=100, accuracy=accuracy, accuracy_without_majority=no_major,
                         macro_accuracy=macro, first_frames_accuracy=first, flicker_rate=flicker)


def test_the_gate_wants_the_margin_on_accuracy_and_no_loss_elsewhere():
    promoted = score(0.90)
    assert beats(score(0.91), promoted, margin=0.005, tolerance=0.0)
    assert not beats(score(0.903), promoted, margin=0.005, tolerance=0.0)
    assert "macro_accuracy" in shortfall(score(0.95, macro=0.69), promoted, 0.005, 0.0)
    assert "first_frames_accuracy" in shortfall(score(0.95, first=0.5), promoted, 0.005, 0.0)
    assert "flicker" in shortfall(score(0.95, flicker=0.2), promoted, 0.005, 0.0)
    assert beats(score(0.95, macro=0.69), promoted, 0.005, tolerance=0.02)


def test_a_stage_that_does_not_beat_the_one_before_it_is_switched_off():
    reasons = []
    v0, v1_worse, v2, tracking_only = score(0.96), score(0.95), score(0.955), score(0.97, flicker=0.02)
    stages, kept = choose_stages([v0, v1_worse, v2, tracking_only], 0.0, reasons)
    assert stages == Stages(realgram=False, tracking=True, reranker=False) and kept == 3
    assert reasons[0].startswith("realgram switched off")
    stages, kept = choose_stages([v0, score(0.97), score(0.96), tracking_only], 0.0, reasons := [])
    assert stages == Stages(realgram=True, tracking=False) and kept == 1
    assert reasons == ["tracking switched off: accuracy 0.9600 < 0.9700 + 0.0"]


def test_stages_name_the_pipeline():
    assert Stages(False, False, False).version == "v0"
    assert Stages(True, False, False).version == "v1"
    assert Stages(False, True, False).version == "v2"
    assert Stages(True, True, True).version == "v3"


def test_a_model_set_folder_refuses_unknown_keys_and_missing_files(tmp_path):
    folder = ModelSet(folder=tmp_path / "set", name="set", embedder_name="e", has_embedder=False).save()
    assert ModelSet.load(folder).pipeline_config().version == "v2"
    (folder / "realgram.json").write_text(json.dumps({"wieght": 0.3}))
    with pytest.raises(ModelSetError, match="no field 'wieght'"):
        ModelSet.load(folder)
    ModelSet(folder=folder, name="set", embedder_name="e", has_embedder=True).save()
    with pytest.raises(ModelSetError, match="embedder.pt is missing"):
        ModelSet.load(folder)
