"""`manage.py train_reranker` from a COCO replay and from a company's labels, and v3 in `evaluate`."""
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotator.models import Frame
from annotator.services.labels import Decision, record_labels
from inference.embedder import save_checkpoint
from inference.reranker import Reranker
from tests.coco_files import write_coco
from tests.factories import BoxFactory, FrameFactory, ProductFactory, ShelfFactory


@pytest.fixture
def checkpoint(tiny_embedder, tmp_path):
    path = tmp_path / "tiny.pt"
    save_checkpoint(tiny_embedder.model, tiny_embedder.config, path, name="tiny-rerank")
    return path


@pytest.fixture
def dataset(tmp_path):
    frames = [
        {"name": f"{shelf}-{minute}.jpg", "camera": shelf, "shelf": shelf, "captured_at": f"2024-01-01T10:{minute:02d}:00",
         "boxes": [(10, 10, 40, 60, 1), (60, 10, 40, 60, 2), (110, 10, 40, 60, 1)]}
        for shelf in ("train-a", "train-b", "report") for minute in range(5)
    ]
    return write_coco(tmp_path / "data", frames)


def test_train_reranker_reports_held_out_shelves_and_evaluate_runs_v3(dataset, checkpoint, tmp_path, settings,
                                                                     capsys):
    settings.VAR_DIR = tmp_path / "var"
    model = tmp_path / "reranker.json"
    call_command("train_reranker", dataset=str(dataset), embedder=str(checkpoint), out=model, train_shelves="^train")
    printed = capsys.readouterr().out
    assert "training on 2 shelves, reporting on 1 held-out shelves" in printed
    assert all(f"  {name} " in printed for name in ("v1", "v2", "v3"))
    reranker = Reranker.load(model)
    assert reranker.metrics["frames"] == 10 and set(reranker.metrics["held_out"]) == {"v1", "v2", "v3"}
    assert reranker.trained_until == datetime(2024, 1, 1, 10, 4, tzinfo=UTC).timestamp()

    out = tmp_path / "eval.json"
    call_command("evaluate", str(dataset), embedder=str(checkpoint), pipelines="v0,v1,v2,v3", reranker=model,
                 report_shelves="report", json_out=out)
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"v0", "v1", "v2", "v3"} and results["v3"]["boxes"] == 15


def test_v3_without_a_model_and_bad_models_are_one_line_errors(dataset, tmp_path):
    with pytest.raises(CommandError, match="v3 needs --reranker"):
        call_command("evaluate", str(dataset), pipelines="v3")
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    with pytest.raises(CommandError, match="bad.json: not a reranker model"):
        call_command("evaluate", str(dataset), pipelines="v3", reranker=bad)
    with pytest.raises(CommandError, match="no shelves to train on"):
        call_command("train_reranker", dataset=str(dataset), out=tmp_path / "r.json", train_shelves="nothing")


@pytest.mark.django_db
def test_train_reranker_on_a_companys_labelled_frames(test_engines, tmp_path, settings, capsys):
    settings.VAR_DIR = tmp_path / "var"
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    red, green = ProductFactory(company=company), ProductFactory(company=company)
    layout = [((10, 20, 60, 100), 0), ((90, 20, 60, 100), 1), ((170, 20, 60, 100), 0)]
    for n in range(4):
        frame = FrameFactory(shelf=shelf, blocks=layout, checksum=f"{n:064d}", status=Frame.Status.LABELLED,
                             captured_at=datetime(2024, 3, 4, 10, tzinfo=UTC) + timedelta(hours=n))
        record_labels(decisions=[
            Decision(box=BoxFactory(frame=frame, x=x, y=y, w=w, h=h), product=(red, green)[c], action="imported")
            for (x, y, w, h), c in layout
        ])
    model = tmp_path / "company.json"
    call_command("train_reranker", company=company.name, out=model)
    assert "training on 1 shelves" in capsys.readouterr().out
    assert Reranker.load(model).metrics["frames"] == 3  # the first frame had nothing to search
    with pytest.raises(CommandError, match="no company named 'nobody'"):
        call_command("train_reranker", company="nobody", out=model)
