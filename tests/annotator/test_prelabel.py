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


def test_v1_uses_the_shelf_history_before_the_frame(tiny_embedder, search_space):
    """Realgram lifts the product annotated at this spot of the shelf over an equally good kNN match."""
    from datetime import UTC, datetime, timedelta

    from annotator import engines, selectors
    from inference.pipeline import Pipeline, PipelineConfig
    from inference.realgram import RealgramConfig

    shelf = ShelfFactory()
    company = shelf.camera.store.company
    red_a, red_b = ProductFactory(company=company, name="Red A"), ProductFactory(company=company, name="Red B")
    monday = datetime(2024, 3, 4, 10, tzinfo=UTC)
    # Both products look the same (red); red_b was annotated on this shelf, red_a elsewhere.
    layout = [((10, 20, 60, 100), RED)]
    elsewhere = FrameFactory(blocks=layout, checksum="4" * 64, captured_at=monday,
                             shelf=ShelfFactory(camera__store__company=company))
    here = FrameFactory(shelf=shelf, blocks=layout, checksum="5" * 64, captured_at=monday)
    record_labels(decisions=[
        Decision(box=BoxFactory(frame=elsewhere, x=10, y=20, w=60, h=100), product=red_a, action=Label.Action.IMPORTED),
        Decision(box=BoxFactory(frame=here, x=10, y=20, w=60, h=100), product=red_b, action=Label.Action.IMPORTED),
    ])
    later = FrameFactory(shelf=shelf, blocks=layout, checksum="6" * 64, captured_at=monday + timedelta(days=1))
    box = BoxFactory(frame=later, x=10, y=20, w=60, h=100)

    history = selectors.shelf_history(shelf_id=shelf.pk, before=later.captured_at, window_days=30)
    assert history.product_ids.tolist() == [red_b.pk]
    assert history.boxes[0].tolist() == pytest.approx([10 / 320, 20 / 160, 60 / 320, 100 / 160])
    assert selectors.shelf_history(shelf_id=shelf.pk, before=monday, window_days=30).product_ids.size == 0

    v1 = Pipeline(tiny_embedder, search_space, PipelineConfig.named("v1", realgram=RealgramConfig(weight=0.5)))
    with engines.override(embedder=tiny_embedder, search_space=search_space, pipeline=v1, detector=None):
        prelabel_frame(frame_id=later.pk)
    prediction = Prediction.objects.get(box=box)
    assert prediction.pipeline_version.name == "v1"
    assert prediction.product_id == red_b.pk
    top = prediction.candidates[0]
    assert top["components"]["realgram"] > 0 and top["components"]["knn"] > 0.99
    assert {c["product_id"] for c in prediction.candidates} == {red_a.pk, red_b.pk}
