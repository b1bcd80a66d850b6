"""`manage.py demo` builds a store whose queued frames, once pre-labelled with the default embedder,
carry suggestions that are mostly right."""
import json

import pytest
from django.conf import settings
from django.core.management import call_command

from annotator import engines
from annotator.models import Frame, Prediction, Product
from annotator.services.prelabel import prelabel_frame
from inference.search_space import QdrantSearchSpace, collection_name, connect_qdrant

pytestmark = pytest.mark.django_db


def test_demo_store_is_annotated_in_part_and_prelabelled(monkeypatch, settings, tmp_path, capsys):
    settings.VAR_DIR = tmp_path
    queued: list[int] = []
    monkeypatch.setattr("annotator.management.commands.demo.prelabel_frame.delay", queued.append)

    call_command("demo")

    out = capsys.readouterr().out
    for role in ("annotator", "qa_lead", "manager", "admin"):
        assert f"  {role}" in out
    assert Product.objects.filter(company__name="demo").count() == 16
    assert Frame.objects.filter(status=Frame.Status.LABELLED).count() == 9
    assert sorted(queued) == sorted(Frame.objects.filter(status=Frame.Status.QUEUED).values_list("pk", flat=True))
    assert len(queued) == 15

    embedder = engines.embedder()  # the default: ImageNet EfficientNet-Lite0 from its wheel
    space = QdrantSearchSpace(connect_qdrant(path=":memory:"), collection_name(embedder.name), embedder.dim)
    with engines.override(search_space=space):
        for frame_id in queued:
            prelabel_frame(frame_id=frame_id)

    assert Frame.objects.filter(status=Frame.Status.READY).count() == 15
    # The demo's frames are hours apart: with a 12-hour schedule, annotators get some of them.
    assert Frame.objects.filter(status=Frame.Status.READY, scheduled=True).exists()
    truth = ground_truth(tmp_path / "demo" / "annotations.json")
    predictions = Prediction.objects.filter(box__frame__status=Frame.Status.READY).select_related("box__frame", "product")
    hits = [p.product.sku == truth[(p.box.frame.captured_at.strftime("%Y-%m-%dT%H:%M:%S"), round(p.box.x, 1), round(p.box.y, 1))]
            for p in predictions]
    assert len(hits) > 200
    assert sum(hits) / len(hits) > 0.8


def ground_truth(path) -> dict:
    coco = json.loads(path.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    times = {i["id"]: i["captured_at"] for i in coco["images"]}
    return {(times[a["image_id"]], round(a["bbox"][0], 1), round(a["bbox"][1], 1)): names[a["category_id"]]
            for a in coco["annotations"]}
