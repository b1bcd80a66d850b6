"""Training the embedder on the app's own labels."""
import io

import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError

from annotator.services.labels import Decision, record_labels
from annotator.services.training_data import labelled_crops
from tests.factories import BoxFactory, FrameFactory, ProductFactory, ShelfFactory

pytestmark = pytest.mark.django_db
LAYOUT = [((10, 20, 60, 100), 0), ((90, 20, 60, 100), 1), ((170, 20, 60, 100), 2)]


@pytest.fixture
def labelled(tmp_path):
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    products = [ProductFactory(company=company, sku=sku) for sku in ("red", "green", "other-product")]
    for n in range(2):
        frame = FrameFactory(shelf=shelf, blocks=LAYOUT, checksum=f"{n:064d}")
        record_labels(decisions=[
            Decision(box=BoxFactory(frame=frame, x=x, y=y, w=w, h=h), product=products[c], action="imported")
            for (x, y, w, h), c in LAYOUT
        ])
    return company, products


def test_labelled_crops_are_the_current_labels_with_their_boxes(labelled, tmp_path):
    company, products = labelled
    samples = labelled_crops(company=company, cache_dir=tmp_path / "cache", exclude_skus=["other-product"])
    assert sorted(s.label for s in samples) == sorted([products[0].pk, products[1].pk] * 2)
    assert all(s.image_path.is_file() and s.group == company.pk for s in samples)
    assert {s.bbox for s in samples} == {(10.0, 20.0, 60.0, 100.0), (90.0, 20.0, 60.0, 100.0)}


def test_train_embedder_on_a_company_writes_a_checkpoint(labelled, tmp_path, settings):
    company, _ = labelled
    settings.VAR_DIR = tmp_path / "var"
    out = io.StringIO()
    call_command("train_embedder", "--out", tmp_path / "own.pt", "--company", company.name,
                 "--exclude-sku", "other-product", "--backbone", "test_efficientnet", "--init", "none",
                 "--embedding-dim", "32", "--input-size", "64", "--p", "2", "--k", "2", "--epochs", "1", stdout=out)
    assert "4 crops, 2 classes" in out.getvalue()
    assert torch.load(tmp_path / "own.pt", weights_only=False)["config"]["embedding_dim"] == 32
    with pytest.raises(CommandError, match="unknown company 'nobody'"):
        call_command("train_embedder", "--out", tmp_path / "x.pt", "--company", "nobody")


def test_frames_in_remote_storage_are_downloaded_once_into_the_cache(labelled, tmp_path, monkeypatch):
    from django.db.models.fields.files import FieldFile

    from annotator.models import Frame

    def no_local_path(self):
        raise NotImplementedError("This backend doesn't support absolute paths.")  # as S3Storage says

    monkeypatch.setattr(FieldFile, "path", property(no_local_path))
    company, _ = labelled
    samples = labelled_crops(company=company, cache_dir=tmp_path / "cache")
    cached = sorted((tmp_path / "cache").iterdir())
    assert [p.name for p in cached] == sorted(f"frame-{f.pk}.jpg" for f in Frame.objects.all())
    assert {s.image_path for s in samples} == set(cached)
    frame = Frame.objects.first()
    with frame.image.open("rb") as stored:
        assert (tmp_path / "cache" / f"frame-{frame.pk}.jpg").read_bytes() == stored.read()
