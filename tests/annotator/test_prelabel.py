"""The thin end-to-end path in one process: labels reach the search space through the outbox, and a
new frame's boxes get ranked suggestions stored as Predictions."""
import pytest

from annotator.models import Box, Frame, Label, Prediction, SearchSpaceOutbox
from annotator.services import search_index
from annotator.services.labels import Decision, record_labels
from annotator.services.prelabel import prelabel_frame
from tests.factories import BoxFactory, FrameFactory, ProductFactory, ShelfFactory

pytestmark = pytest.mark.django_db

RED, GREEN = 0, 1
LAYOUT = [((10, 20, 60, 100), RED), ((90, 20, 60, 100), GREEN), ((170, 20, 60, 100), RED)]


def labelled_frame(shelf, products, checksum):
    frame = FrameFactory(shelf=shelf, blocks=LAYOUT, checksum=checksum, status=Frame.Status.LABELLED)
    boxes = [BoxFactory(frame=frame, x=x, y=y, w=w, h=h) for (x, y, w, h), _ in LAYOUT]
    record_labels(decisions=[
        Decision(box=box, product=products[colour], action=Label.Action.IMPORTED)
        for box, (_, colour) in zip(boxes, LAYOUT)
    ])
    return frame


def test_labels_flow_through_the_outbox_and_suggest_the_next_frame(test_engines, search_space):
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    products = {RED: ProductFactory(company=company, name="Red"), GREEN: ProductFactory(company=company, name="Green")}
    labelled_frame(shelf, products, "a" * 64)
    assert SearchSpaceOutbox.objects.filter(delivered_at__isnull=True).count() == 3

    incoming = FrameFactory(shelf=shelf, blocks=LAYOUT, checksum="b" * 64)
    boxes = [BoxFactory(frame=incoming, x=x, y=y, w=w, h=h) for (x, y, w, h), _ in LAYOUT]

    prelabel_frame(frame_id=incoming.pk)

    assert SearchSpaceOutbox.objects.filter(delivered_at__isnull=True).count() == 0
    assert search_space.count(company_id=company.pk) == 3
    incoming.refresh_from_db()
    assert incoming.status == Frame.Status.READY
    chosen = {p.box_id: p.product_id for p in Prediction.objects.filter(box__frame=incoming)}
    assert chosen == {box.pk: products[colour].pk for box, (_, colour) in zip(boxes, LAYOUT)}
    prediction = Prediction.objects.get(box=boxes[0])
    assert prediction.pipeline_version.name == "v0-test"
    assert prediction.candidates[0]["product_id"] == products[RED].pk
    assert prediction.candidates[0]["components"]["knn"] == pytest.approx(prediction.score)
    assert [c["score"] for c in prediction.candidates] == sorted((c["score"] for c in prediction.candidates), reverse=True)


def test_prelabelling_twice_replaces_predictions(test_engines):
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    products = {RED: ProductFactory(company=company), GREEN: ProductFactory(company=company)}
    labelled_frame(shelf, products, "c" * 64)
    incoming = FrameFactory(shelf=shelf, blocks=LAYOUT, checksum="d" * 64)
    for (x, y, w, h), _ in LAYOUT:
        BoxFactory(frame=incoming, x=x, y=y, w=w, h=h)
    prelabel_frame(frame_id=incoming.pk)
    prelabel_frame(frame_id=incoming.pk)
    assert Prediction.objects.filter(box__frame=incoming).count() == 3


def test_search_is_scoped_to_the_company(test_engines, search_space):
    shelf = ShelfFactory()
    products = {RED: ProductFactory(company=shelf.camera.store.company),
                GREEN: ProductFactory(company=shelf.camera.store.company)}
    labelled_frame(shelf, products, "e" * 64)
    search_index.deliver_outbox()
    other_company_frame = FrameFactory(blocks=LAYOUT, checksum="f" * 64)
    for (x, y, w, h), _ in LAYOUT:
        BoxFactory(frame=other_company_frame, x=x, y=y, w=w, h=h)
    prelabel_frame(frame_id=other_company_frame.pk)
    assert search_space.count() == 3
    assert not Prediction.objects.filter(box__frame=other_company_frame, product__isnull=False).exists()


def test_an_unreadable_image_marks_the_frame_failed_with_its_reason(test_engines):
    frame = FrameFactory(checksum="9" * 64)
    BoxFactory(frame=frame)
    frame.image.open("wb").write(b"not an image")
    frame.image.close()
    with pytest.raises(ValueError):
        prelabel_frame(frame_id=frame.pk)
    frame.refresh_from_db()
    assert frame.status == Frame.Status.FAILED
    assert "not a readable image" in frame.status_reason


def test_a_detector_adds_boxes_to_a_frame_without_any(tiny_embedder, search_space, test_engines):
    from annotator import engines
    from inference.detector import Detection

    class StubDetector:
        def detect(self, image):
            return [Detection(10, 20, 60, 100, 0.8), Detection(90, 20, 60, 100, 0.7)]

    frame = FrameFactory(blocks=LAYOUT, checksum="7" * 64)
    with engines.override(detector=StubDetector()):
        prelabel_frame(frame_id=frame.pk)
        prelabel_frame(frame_id=frame.pk)  # boxes exist now: not detected again
    boxes = list(Box.objects.filter(frame=frame))
    assert [(b.source, b.detector_score) for b in boxes] == [("detector", 0.8), ("detector", 0.7)]


def test_relabelling_and_deleting_update_the_search_space(test_engines, search_space):
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    products = {RED: ProductFactory(company=company), GREEN: ProductFactory(company=company)}
    frame = labelled_frame(shelf, products, "1" * 64)
    search_index.deliver_outbox()
    first, second, _ = frame.boxes.order_by("pk")
    record_labels(decisions=[
        Decision(box=first, product=products[GREEN], action=Label.Action.CORRECTED),
        Decision(box=second, product=None, action=Label.Action.DELETED),
    ])
    search_index.deliver_outbox()
    assert search_space.count() == 2
    point = search_space.client.retrieve(search_space.collection, [first.pk], with_payload=True)[0]
    assert point.payload["product_id"] == products[GREEN].pk
    assert Label.objects.filter(box=first).count() == 2  # history kept
    assert Label.objects.get(box=first, is_current=True).action == Label.Action.CORRECTED


def test_outbox_keeps_changes_while_qdrant_is_down(test_engines, search_space, monkeypatch):
    shelf = ShelfFactory()
    products = {RED: ProductFactory(company=shelf.camera.store.company),
                GREEN: ProductFactory(company=shelf.camera.store.company)}
    labelled_frame(shelf, products, "2" * 64)

    def unavailable(*args, **kwargs):
        raise ConnectionError("qdrant is down")

    monkeypatch.setattr(search_space, "upsert", unavailable)
    with pytest.raises(ConnectionError):
        search_index.deliver_outbox()
    pending = SearchSpaceOutbox.objects.filter(delivered_at__isnull=True)
    assert pending.count() == 3
    assert all(row.attempts == 1 and "qdrant is down" in row.last_error for row in pending)
    monkeypatch.undo()
    assert search_index.deliver_outbox() == 3
    assert search_space.count() == 3


def test_rebuild_search_space_from_the_database(test_engines, search_space):
    shelf = ShelfFactory()
    products = {RED: ProductFactory(company=shelf.camera.store.company),
                GREEN: ProductFactory(company=shelf.camera.store.company)}
    labelled_frame(shelf, products, "3" * 64)
    search_space.recreate()
    assert search_index.rebuild_search_space() == 3
    assert search_space.count() == 3
    assert search_index.pending_count() == 0
