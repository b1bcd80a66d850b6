"""`manage.py evaluate`: the replay from the command line, its JSON and its errors."""
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from inference.embedder import save_checkpoint
from tests.coco_files import write_coco

FIELDS = {"accuracy", "macro_accuracy", "accuracy_per_store", "predicted_boxes", "flicker_rate", "boxes"}


@pytest.fixture
def checkpoint(tiny_embedder, tmp_path):
    path = tmp_path / "tiny.pt"
    save_checkpoint(tiny_embedder.model, tiny_embedder.config, path, name="tiny-eval")
    return path


@pytest.fixture
def dataset(tmp_path):
    frames = []
    for camera in ("cam-1", "cam-2"):
        for minute in range(4):
            frames.append({"name": f"{camera}-{minute}.jpg", "camera": camera, "shelf": camera,
                           "captured_at": f"2024-01-01T10:0{minute}:00" if minute != 2 else None,
                           "boxes": [(10, 10, 40, 60, 1), (60, 10, 40, 60, 2), (110, 10, 40, 60, 1)]})
    frames.append({"name": "lonely.jpg", "camera": "cam-3", "shelf": "cam-3", "captured_at": None,
                   "boxes": [(10, 10, 40, 60, 2)]})
    return write_coco(tmp_path / "data", frames)


def test_evaluate_writes_the_same_numbers_twice(dataset, checkpoint, tmp_path, settings, capsys):
    settings.VAR_DIR = tmp_path / "var"
    out = tmp_path / "first.json"
    call_command("evaluate", str(dataset), embedder=str(checkpoint), json_out=out)
    printed = capsys.readouterr().out
    assert "3 images have no captured_at" in printed
    assert "v0" in printed and "v1" in printed
    first = json.loads(out.read_text())
    assert set(first["results"]) == {"v0", "v1", "v2"}
    for result in first["results"].values():
        assert FIELDS <= set(result)
        assert result["boxes"] == 25
        assert 0 < result["predicted_boxes"] < 25  # the first frame has nothing to search
    second_path = tmp_path / "second.json"
    call_command("evaluate", str(dataset), embedder=str(checkpoint), json_out=second_path)
    assert json.loads(second_path.read_text())["results"] == first["results"]


def test_report_shelves_scores_a_subset(dataset, checkpoint, tmp_path, settings):
    settings.VAR_DIR = tmp_path / "var"
    out = tmp_path / "subset.json"
    call_command("evaluate", str(dataset), embedder=str(checkpoint), pipelines="v0", report_shelves="cam-2", json_out=out)
    assert json.loads(out.read_text())["results"]["v0"]["boxes"] == 12


@pytest.mark.parametrize("options, message", [
    ({"pipelines": "v0,v9"}, "unknown pipeline 'v9'"),
    ({"annotate_every": 0}, "--annotate-every must be at least 1"),
    ({"report_shelves": "("}, "bad regex"),
])
def test_bad_options_are_one_line_errors(dataset, options, message):
    with pytest.raises(CommandError, match=message):
        call_command("evaluate", str(dataset), **options)


def test_a_box_outside_its_image_is_a_clear_error(tmp_path):
    path = write_coco(tmp_path, [{"name": "a.jpg", "captured_at": None, "boxes": [(300, 10, 40, 60, 1)]}])
    with pytest.raises(CommandError) as error:
        call_command("evaluate", str(path))
    assert "lies outside its image" in str(error.value) and "\n" not in str(error.value)


def test_tune_realgram_saves_a_config_the_pipeline_loads(dataset, checkpoint, tmp_path, settings, capsys):
    from inference.realgram import RealgramConfig

    settings.VAR_DIR = tmp_path / "var"
    out = tmp_path / "realgram.json"
    call_command("tune_realgram", str(dataset), embedder=str(checkpoint), trials=2, out=out, tune_shelves="cam-1")
    printed = capsys.readouterr().out
    assert "tuning on 1 shelves, reporting on 2 held-out shelves" in printed
    assert "v1 tuned" in printed
    config = RealgramConfig.from_dict(json.loads(out.read_text()))
    assert config.window_days == 30.0
    out_eval = tmp_path / "eval.json"
    call_command("evaluate", str(dataset), embedder=str(checkpoint), realgram_config=out, json_out=out_eval)
    assert json.loads(out_eval.read_text())["pipelines"]["v1"]["realgram"]["weight"] == config.weight


def test_tune_realgram_needs_held_out_shelves(dataset):
    with pytest.raises(CommandError, match="need shelves to tune on and others to report on"):
        call_command("tune_realgram", str(dataset), trials=1, tune_shelves=".")


def test_evaluate_with_a_detector_reports_recall_and_matched_accuracy(dataset, checkpoint, tmp_path, settings,
                                                                     monkeypatch):
    from inference.detector import Detection

    class FindsTheFirstTwoBoxes:
        def __init__(self, weights, *args, **kwargs):
            assert weights.is_file()

        def detect(self, image):
            return [Detection(10, 10, 40, 60, 0.9), Detection(61, 10, 40, 60, 0.8), Detection(200, 100, 30, 30, 0.5)]

    monkeypatch.setattr("inference.detector.YoloDetector", FindsTheFirstTwoBoxes)
    settings.VAR_DIR = tmp_path / "var"
    weights = tmp_path / "yolo.pt"
    weights.write_bytes(b"stand-in")
    out = tmp_path / "detected.json"
    call_command("evaluate", str(dataset), embedder=str(checkpoint), pipelines="v0", detector=weights, json_out=out)
    result = json.loads(out.read_text())["results"]["v0"]
    # 8 frames of 3 boxes and one of 1: the detector finds 2 of 3, and the lonely frame's only box.
    assert result["detection_recall"] == pytest.approx(17 / 25)
    assert 0 < result["matched_accuracy"] <= 1
    with pytest.raises(CommandError, match="detector weights not found"):
        call_command("evaluate", str(dataset), embedder=str(checkpoint), detector=tmp_path / "missing.pt")


def test_a_dataset_round_writes_a_model_set_that_evaluate_replays_to_the_same_figures(
        dataset, tmp_path, settings, test_engines, capsys):
    settings.VAR_DIR = tmp_path / "var"
    settings.LEARN_TRAINING = {"backbone": "test_efficientnet", "embedding_dim": 32, "input_size": 64, "init": "none",
                               "p": 2, "k": 4, "epochs": 1, "max_steps": 2, "realgram_trials": 2}
    folder = tmp_path / "set"
    call_command("learn", "--dataset", str(dataset), "--gate-shelves", "cam-2", "--budget-minutes", "1",
                 "--out", str(folder))
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(folder)
    manifest = json.loads((folder / "model_set.json").read_text())
    served = manifest["figures"]["gate"]["candidate"]["served"]

    out = tmp_path / "models.json"
    call_command("evaluate", str(dataset), models=str(folder), report_shelves="cam-2", json_out=out)
    results = json.loads(out.read_text())["results"]
    assert results[served["pipeline"]] == served
    assert "v0" in results

    with pytest.raises(CommandError, match="--models brings every component"):
        call_command("evaluate", str(dataset), models=str(folder), embedder="x.pt")
    with pytest.raises(CommandError, match="not a model set"):
        call_command("evaluate", str(dataset), models=str(tmp_path))
