"""The thin end-to-end path in one process: labels reach the search space through the outbox, and a
new frame's boxes get ranked suggestions stored as Predictions."""
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from annotator.models import Box, BoxEmbedding, Frame, Label, Prediction, SearchSpaceOutbox
from annotator.services import outbox, search_index
from annotator.services.labels import Decision, record_labels
from annotator.services.prelabel import prelabel_frame
from tests.factories import BoxFactory, FrameFactory, ProductFactory, ShelfFactory

pytestmark = pytest.mark.django_db

RED, GREEN = 0, 1
LAYOUT = [((10, 20, 60, 100), RED), ((90, 20, 60, 100), GREEN), ((170, 20, 60, 100), RED)]
MONDAY = datetime(2024, 3, 4, 10, tzinfo=UTC)


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
    assert outbox.pending_count() == 0


def test_v1_uses_the_shelf_history_before_the_frame(tiny_embedder, search_space):
    """Realgram lifts the product annotated at this spot of the shelf over an equally good kNN match."""
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


def two_lookalikes_and_a_camera():
    """A shelf, two products that look the same (red), and red_a labelled on another shelf, so the
    search space alone says red_a for any red crop."""
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    red_a, red_b = ProductFactory(company=company, name="Red A"), ProductFactory(company=company, name="Red B")
    elsewhere = FrameFactory(blocks=[((10, 20, 60, 100), RED)], checksum="8" * 64, captured_at=MONDAY,
                             shelf=ShelfFactory(camera__store__company=company))
    record_labels(decisions=[Decision(box=BoxFactory(frame=elsewhere, x=10, y=20, w=60, h=100), product=red_a,
                                      action=Label.Action.IMPORTED)])
    return shelf, red_a, red_b


def frame_on(shelf, checksum, hours, status=Frame.Status.QUEUED):
    frame = FrameFactory(shelf=shelf, blocks=[((10, 20, 60, 100), RED)], checksum=checksum * 64,
                         captured_at=MONDAY + timedelta(hours=hours), status=status)
    return frame, BoxFactory(frame=frame, x=10, y=20, w=60, h=100)


def pipeline_of(version, tiny_embedder, search_space, reranker=None):
    from inference.pipeline import Pipeline, PipelineConfig
    from inference.realgram import RealgramConfig

    # No shelf context, so what moves a suggestion here is tracking alone.
    config = PipelineConfig.named(version, realgram=RealgramConfig(weight=0.0), knn_neighbours=5, top_k=5)
    return Pipeline(tiny_embedder, search_space, config, reranker)


def test_v2_carries_the_label_confirmed_on_the_cameras_previous_frame(tiny_embedder, search_space):
    from annotator import engines

    shelf, red_a, red_b = two_lookalikes_and_a_camera()
    before, before_box = frame_on(shelf, "a", hours=1)
    later, later_box = frame_on(shelf, "b", hours=2)
    v2 = pipeline_of("v2", tiny_embedder, search_space)
    with engines.override(embedder=tiny_embedder, search_space=search_space, pipeline=v2, detector=None):
        prelabel_frame(frame_id=before.pk)
        assert Prediction.objects.get(box=before_box).product_id == red_a.pk
        assert BoxEmbedding.objects.filter(box=before_box).count() == 1
        # A person corrects the previous frame: the box is red_b.
        record_labels(decisions=[Decision(box=before_box, product=red_b, action=Label.Action.CORRECTED)])
        Frame.objects.filter(pk=before.pk).update(status=Frame.Status.LABELLED)
        prelabel_frame(frame_id=later.pk)
    prediction = Prediction.objects.get(box=later_box)
    assert prediction.pipeline_version.name == "v2"
    assert prediction.product_id == red_b.pk
    components = prediction.candidates[0]["components"]
    assert components["tracking_confirmed"] == 1.0 and components["tracking_similarity"] > 0.99
    later.refresh_from_db()
    assert later.confidence == pytest.approx(prediction.candidates[0]["score"] - prediction.candidates[1]["score"])


def test_v2_embeds_a_previous_frame_that_was_imported_with_its_labels(tiny_embedder, search_space):
    from annotator import engines

    shelf, red_a, red_b = two_lookalikes_and_a_camera()
    imported, imported_box = frame_on(shelf, "c", hours=1, status=Frame.Status.LABELLED)
    record_labels(decisions=[Decision(box=imported_box, product=red_b, action=Label.Action.IMPORTED)])
    later, later_box = frame_on(shelf, "d", hours=2)
    v2 = pipeline_of("v2", tiny_embedder, search_space)
    with engines.override(embedder=tiny_embedder, search_space=search_space, pipeline=v2, detector=None):
        prelabel_frame(frame_id=later.pk)
    assert BoxEmbedding.objects.filter(box=imported_box).count() == 1
    assert Prediction.objects.get(box=later_box).product_id == red_b.pk


def reranker_trained_until(moment):
    import numpy as np

    from inference.candidates import Candidate
    from inference.reranker import TrainingRows, candidate_features, fit_reranker

    rng = np.random.default_rng(0)
    rows = TrainingRows()
    for frame in range(40):
        knn = rng.uniform(0.5, 1.0, (10, 2))
        candidates = [[Candidate(1, float(a), {"knn": float(a)}), Candidate(2, float(b), {"knn": float(b)})]
                      for a, b in knn]
        rows.add(candidate_features(candidates, np.full((10, 4), 0.2), 1.0), 1 + knn.argmax(axis=1), frame, 0.0)
    reranker = fit_reranker(rows, rounds=20)
    reranker.trained_until = moment.timestamp()
    return reranker


@pytest.mark.parametrize("trained_hours, recorded", [(None, "v2"), (5, "v2"), (1, "v3")])
def test_v3_ranks_only_frames_taken_after_its_training_else_as_v2(tiny_embedder, search_space, trained_hours,
                                                                  recorded):
    from annotator import engines

    shelf, red_a, _ = two_lookalikes_and_a_camera()
    frame, box = frame_on(shelf, "e", hours=2)
    reranker = None if trained_hours is None else reranker_trained_until(MONDAY + timedelta(hours=trained_hours))
    v3 = pipeline_of("v3", tiny_embedder, search_space, reranker)
    with engines.override(embedder=tiny_embedder, search_space=search_space, pipeline=v3, detector=None):
        prelabel_frame(frame_id=frame.pk)
    prediction = Prediction.objects.get(box=box)
    assert prediction.pipeline_version.name == recorded
    assert ("reranker" in prediction.candidates[0]["components"]) == (recorded == "v3")
    assert prediction.product_id == red_a.pk


def test_delivering_labels_reuses_the_embeddings_pre_labelling_stored(test_engines, search_space, monkeypatch):
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    products = {RED: ProductFactory(company=company), GREEN: ProductFactory(company=company)}
    frame = FrameFactory(shelf=shelf, blocks=LAYOUT, checksum="e" * 64)
    boxes = [BoxFactory(frame=frame, x=x, y=y, w=w, h=h) for (x, y, w, h), _ in LAYOUT]
    prelabel_frame(frame_id=frame.pk)
    embedded = []
    original = test_engines.embed_boxes
    monkeypatch.setattr(test_engines, "embed_boxes", lambda image, bboxes: embedded.append(len(bboxes))
                        or original(image, bboxes))
    drawn = BoxFactory(frame=frame, x=250, y=20, w=60, h=100)  # a box the annotator added
    record_labels(decisions=[Decision(box=b, product=products[c], action=Label.Action.CONFIRMED)
                             for b, (_, c) in zip(boxes, LAYOUT)]
                  + [Decision(box=drawn, product=products[RED], action=Label.Action.ADDED)])
    search_index.deliver_outbox()
    assert embedded == [1]  # only the drawn box was embedded
    assert search_space.count(company_id=company.pk) == 4
    [[hit, *_]] = search_space.search(
        np.frombuffer(bytes(BoxEmbedding.objects.get(box=boxes[1]).vector), np.float16)[None].astype(np.float32),
        company_id=company.pk)
    assert hit.box_id == boxes[1].pk and hit.score == pytest.approx(1.0, abs=1e-3)


def prelabel_with_threshold(monkeypatch, threshold, calibrator):
    """Pre-label a fresh frame of a company whose auto-accept threshold is ``threshold``, served with
    ``calibrator`` (None: uncalibrated, the raw scores only); returns its predictions."""
    import dataclasses

    from annotator.services import prelabel
    from annotator.services.serving import serving as real_serving

    shelf = ShelfFactory()
    company = shelf.camera.store.company
    company.auto_accept_threshold = threshold
    company.save()
    products = {RED: ProductFactory(company=company), GREEN: ProductFactory(company=company)}
    labelled_frame(shelf, products, "e" * 64)
    incoming = FrameFactory(shelf=shelf, blocks=LAYOUT, checksum="f" * 64)
    for (x, y, w, h), _ in LAYOUT:
        BoxFactory(frame=incoming, x=x, y=y, w=w, h=h)
    monkeypatch.setattr(prelabel, "serving_of", lambda *, company_id: dataclasses.replace(
        real_serving(company_id=company_id), calibrator=calibrator))
    prelabel_frame(frame_id=incoming.pk)
    return list(Prediction.objects.filter(box__frame=incoming))


@pytest.mark.parametrize(("threshold", "calibrated", "expected"), [
    (0.9, True, True),  # at the threshold: auto-accepted
    (0.5, True, True),
    (0.91, True, False),  # below it
    (None, True, False),  # no threshold: auto-accept is off
    (0.0, False, False),  # uncalibrated scores are never auto-accepted, whatever the threshold
])
def test_prelabelling_auto_accepts_boxes_whose_calibrated_probability_reaches_the_threshold(
        test_engines, monkeypatch, threshold, calibrated, expected):
    from inference.calibration import Calibrator

    calibrator = Calibrator(np.array([0.0]), np.array([0.9]), 10) if calibrated else None
    predictions = prelabel_with_threshold(monkeypatch, threshold, calibrator)
    assert len(predictions) == 3
    assert [p.probability for p in predictions] == ([pytest.approx(0.9)] * 3 if calibrated else [None] * 3)
    assert [p.auto_accepted for p in predictions] == [expected] * 3
