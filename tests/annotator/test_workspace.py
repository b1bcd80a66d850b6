"""The workspace API: schedule, leases, submit, and catalogue search."""
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from annotator.models import Box, Frame, Label, PipelineVersion, Prediction, SearchSpaceOutbox
from annotator.services.workspace import lease_next_frame, schedule_frame
from tests.celery_sends import prelabel_sent_to
from tests.factories import (
    BoxFactory,
    CompanyFactory,
    FrameFactory,
    ProductFactory,
    ShelfFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
MONDAY = datetime(2024, 3, 4, 10, tzinfo=UTC)


@pytest.fixture
def shelf():
    return ShelfFactory()


@pytest.fixture
def company(shelf):
    return shelf.camera.store.company


@pytest.fixture
def products(company):
    return [ProductFactory(company=company, name=name) for name in ("Apple juice", "Orange juice", "Oat milk")]


def ready_frame(shelf, products, *, hours=0, suggestions=(0, 1, 2), checksum=None):
    frame = FrameFactory(shelf=shelf, status=Frame.Status.READY, captured_at=MONDAY + timedelta(hours=hours),
                         checksum=checksum or f"{hours:064d}")
    version, _ = PipelineVersion.objects.get_or_create(name="v1")
    for i, suggested in enumerate(suggestions):
        box = BoxFactory(frame=frame, x=10 + 70 * i, y=10, w=60, h=100)
        candidates = [{"product_id": products[j].pk, "score": 0.9 - 0.1 * k, "components": {"knn": 0.9 - 0.1 * k}}
                      for k, j in enumerate([suggested, *[j for j in range(len(products)) if j != suggested]])]
        Prediction.objects.create(box=box, pipeline_version=version, product=products[suggested], score=0.9,
                                  candidates=candidates)
    schedule_frame(frame=frame)
    return frame


def annotator(company, name="ann"):
    return UserFactory(username=name, company=company, role="annotator")


def test_the_schedule_picks_one_frame_per_camera_per_interval(shelf, products):
    shelf.camera.store.annotation_interval_hours = 48
    shelf.camera.store.save()
    frames = [ready_frame(shelf, products, hours=h) for h in (0, 10, 30, 50, 60, 100)]
    assert [f.scheduled for f in frames] == [True, False, False, True, False, True]


def test_next_frame_leases_and_a_second_annotator_is_refused(client, shelf, company, products):
    frame = ready_frame(shelf, products)
    first, second = annotator(company, "first"), annotator(company, "second")
    client.force_login(first)
    response = client.post("/api/frames/next/")
    assert response.status_code == 200 and response.json()["id"] == frame.pk
    assert response.json()["leased_by"] == "first"
    assert {p["name"] for p in response.json()["products"]} == {"Apple juice", "Orange juice", "Oat milk"}

    client.force_login(second)
    refused = client.post(f"/api/frames/{frame.pk}/lease/")
    assert refused.status_code == 409
    assert "first is labelling frame" in refused.json()["detail"]
    assert client.post("/api/frames/next/").status_code == 204

    frame.refresh_from_db()
    frame.lease_expires_at = timezone.now() - timedelta(seconds=1)
    frame.save()
    assert client.post(f"/api/frames/{frame.pk}/lease/").status_code == 200


def test_submit_records_each_action_and_queues_the_search_space(client, shelf, company, products, monkeypatch,
                                                                django_capture_on_commit_callbacks):
    delivered = []
    monkeypatch.setattr("backend.celery.app.send_task",
                        lambda name, **options: delivered.append(name == "annotator.tasks.deliver_search_outbox"))
    frame = ready_frame(shelf, products)
    user = annotator(company)
    client.force_login(user)
    client.post(f"/api/frames/{frame.pk}/lease/")
    first, second, third = frame.boxes.order_by("pk")
    answers = {"boxes": [
        {"id": first.pk, "product_id": products[0].pk, "time_spent_ms": 800},   # the suggestion: confirmed
        {"id": second.pk, "product_id": products[2].pk, "time_spent_ms": 2500},  # another product: corrected
        {"id": third.pk, "deleted": True},
        {"bbox": [250, 10, 50, 100], "product_id": products[1].pk, "time_spent_ms": 4000},
    ]}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/frames/{frame.pk}/submit/", answers, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json() == {"frame_id": frame.pk, "confirmed": 1, "corrected": 1, "added": 1, "deleted": 1}
    labels = {label.box_id: label for label in Label.objects.filter(box__frame=frame)}
    assert labels[first.pk].action == "confirmed" and labels[first.pk].suggested_product_id == products[0].pk
    assert labels[second.pk].action == "corrected" and labels[second.pk].product_id == products[2].pk
    assert labels[third.pk].action == "deleted" and labels[third.pk].product_id is None
    added = Box.objects.get(frame=frame, source=Box.Source.MANUAL)
    assert labels[added.pk].action == "added" and labels[added.pk].time_spent_ms == 4000
    assert all(label.annotator == user for label in labels.values())
    # The pipeline version whose suggestion was shown, for the confirm rate by version.
    assert {labels[b.pk].suggested_by.name for b in (first, second, third)} == {"v1"}
    assert labels[added.pk].suggested_by is None
    frame.refresh_from_db()
    assert frame.status == Frame.Status.LABELLED and frame.leased_by is None
    outbox = SearchSpaceOutbox.objects.filter(delivered_at__isnull=True)
    assert sorted((row.box_key, row.operation) for row in outbox) == sorted(
        [(first.pk, "upsert"), (second.pk, "upsert"), (third.pk, "delete"), (added.pk, "upsert")])
    assert delivered == [True]
    again = client.post(f"/api/frames/{frame.pk}/submit/", answers, content_type="application/json")
    assert again.status_code == 409 and "already submitted" in again.json()["detail"]


@pytest.mark.parametrize("answers, message", [
    (lambda boxes, products, other: [{"id": boxes[0].pk, "product_id": products[0].pk}], "has no answer"),
    (lambda boxes, products, other: [{"id": b.pk, "product_id": other.pk} for b in boxes], "Unknown product"),
    (lambda boxes, products, other: [{"id": b.pk, "product_id": products[0].pk} for b in boxes]
     + [{"bbox": [300, 10, 50, 100], "product_id": products[0].pk}], "lies outside"),
    (lambda boxes, products, other: [{"id": b.pk} for b in boxes], "needs a product or deleted"),
    (lambda boxes, products, other: [{"id": boxes[0].pk, "product_id": products[0].pk}] * 2
     + [{"id": b.pk, "product_id": products[0].pk} for b in boxes[1:]], "answered twice"),
])
def test_an_invalid_submission_is_a_400_and_writes_nothing(client, shelf, company, products, answers, message):
    frame = ready_frame(shelf, products)
    client.force_login(annotator(company))
    boxes = list(frame.boxes.order_by("pk"))
    other = ProductFactory(company=CompanyFactory())
    response = client.post(f"/api/frames/{frame.pk}/submit/", {"boxes": answers(boxes, products, other)},
                           content_type="application/json")
    assert response.status_code == 400
    assert message in str(response.json())
    assert Label.objects.count() == 0 and Box.objects.filter(frame=frame).count() == 3
    frame.refresh_from_db()
    assert frame.status == Frame.Status.READY


def test_submitting_a_frame_held_by_someone_else_is_refused(client, shelf, company, products):
    frame = ready_frame(shelf, products)
    client.force_login(annotator(company, "holder"))
    client.post(f"/api/frames/{frame.pk}/lease/")
    client.force_login(annotator(company, "intruder"))
    boxes = frame.boxes.order_by("pk")
    response = client.post(f"/api/frames/{frame.pk}/submit/",
                           {"boxes": [{"id": b.pk, "product_id": products[0].pk} for b in boxes]},
                           content_type="application/json")
    assert response.status_code == 409 and "holder holds frame" in response.json()["detail"]
    assert Label.objects.count() == 0


def test_another_companys_frame_cannot_be_leased_or_submitted(client, shelf, products):
    frame = ready_frame(shelf, products)
    client.force_login(annotator(CompanyFactory(), "outsider"))
    assert client.post(f"/api/frames/{frame.pk}/lease/").status_code == 404
    assert client.post(f"/api/frames/{frame.pk}/submit/", {"boxes": []}, content_type="application/json").status_code == 404
    assert client.post("/api/frames/next/").status_code == 204


def test_product_search_puts_the_store_assortment_first(client, shelf, company, products):
    from annotator.services.labels import Decision, record_labels

    elsewhere = ProductFactory(company=company, name="Apple pie")
    labelled = ready_frame(shelf, products, checksum="f" * 64)
    record_labels(decisions=[Decision(box=labelled.boxes.first(), product=products[0], action="imported")])
    ProductFactory(company=CompanyFactory(), name="Apple secret")
    client.force_login(annotator(company))
    names = [p["name"] for p in client.get("/api/products/search/", {"q": "apple", "store": shelf.camera.store_id}).json()]
    assert names == ["Apple juice", "Apple pie"]
    assert [p["name"] for p in client.get("/api/products/search/", {"q": "appl"}).json()] == ["Apple juice", "Apple pie"]
    assert elsewhere.name in [p["name"] for p in client.get("/api/products/search/", {"q": "pie"}).json()]
    assert client.get("/api/products/search/", {"store": "x"}).status_code == 400


def test_a_failed_frame_can_be_retried_from_the_list(client, shelf, company, products, monkeypatch,
                                                     django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr("backend.celery.app.send_task", prelabel_sent_to(queued.append))
    failed = FrameFactory(shelf=shelf, status=Frame.Status.FAILED, status_reason="OSError: truncated", checksum="e" * 64)
    ready = ready_frame(shelf, products)
    client.force_login(annotator(company))
    listing = client.get("/?status=failed").content.decode()
    assert "OSError: truncated" in listing and f"/frames/{failed.pk}/retry/" in listing
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/frames/{failed.pk}/retry/", {"next": "/?status=failed"})
        client.post(f"/frames/{ready.pk}/retry/")
    assert response.status_code == 302 and response["Location"] == "/?status=failed"
    failed.refresh_from_db()
    assert (failed.status, failed.status_reason) == (Frame.Status.QUEUED, "")
    assert queued == [failed.pk]
    outsider = annotator(CompanyFactory(), "outsider")
    client.force_login(outsider)
    assert client.post(f"/frames/{failed.pk}/retry/").status_code == 404


def test_a_submit_succeeds_while_qdrant_is_down_and_the_outbox_delivers_later(client, shelf, company, products,
                                                                              test_engines, search_space, monkeypatch):
    from annotator.services import outbox, search_index

    frame = ready_frame(shelf, products)
    client.force_login(annotator(company))
    boxes = frame.boxes.order_by("pk")

    def qdrant_down(*args, **kwargs):
        raise ConnectionError("qdrant unavailable")

    monkeypatch.setattr(search_space, "upsert", qdrant_down)
    response = client.post(f"/api/frames/{frame.pk}/submit/",
                           {"boxes": [{"id": b.pk, "product_id": products[0].pk} for b in boxes]},
                           content_type="application/json")
    assert response.status_code == 200
    assert Label.objects.filter(box__frame=frame).count() == 3
    with pytest.raises(ConnectionError):
        search_index.deliver_outbox()
    assert outbox.pending_count() == 3
    monkeypatch.undo()  # Qdrant is back
    assert search_index.deliver_outbox() == 3
    assert search_space.count() == 3 and outbox.pending_count() == 0


def test_next_frame_prefers_the_camera_whose_recent_predictions_were_least_sure(company, products):
    sure_shelf, torn_shelf = ShelfFactory(camera__store__company=company), ShelfFactory(camera__store__company=company)
    older = ready_frame(sure_shelf, products, hours=0, checksum="a" * 64)
    newer = ready_frame(torn_shelf, products, hours=5, checksum="b" * 64)
    # Earlier frames of each camera, pre-labelled but not scheduled: they set the camera's record.
    for shelf, hours, confidence in ((sure_shelf, -2, 0.6), (torn_shelf, -3, 0.05)):
        FrameFactory(shelf=shelf, status=Frame.Status.READY, captured_at=MONDAY + timedelta(hours=hours),
                     confidence=confidence, checksum=f"{hours + 10:064d}")
    Frame.objects.filter(pk=older.pk).update(confidence=0.5)
    Frame.objects.filter(pk=newer.pk).update(confidence=0.1)
    user = annotator(company)
    assert lease_next_frame(user=user).pk == newer.pk  # the unsure camera first, though its frame is newer
    second = lease_next_frame(user=UserFactory(username="other", company=company, role="annotator"))
    assert second.pk == older.pk


def test_next_frame_is_the_oldest_when_cameras_are_equally_sure(company, products):
    shelves = [ShelfFactory(camera__store__company=company) for _ in range(2)]
    frames = [ready_frame(shelf, products, hours=hours, checksum=c * 64)
              for shelf, hours, c in ((shelves[0], 4, "c"), (shelves[1], 1, "d"))]
    Frame.objects.filter(pk__in=[f.pk for f in frames]).update(confidence=0.3)
    assert lease_next_frame(user=annotator(company)).pk == frames[1].pk


def test_managers_read_but_do_not_label(client, shelf, company, products):
    frame = ready_frame(shelf, products)
    client.force_login(UserFactory(username="boss", company=company, role="manager"))
    for response in (client.post("/api/frames/next/"), client.post(f"/api/frames/{frame.pk}/lease/"),
                     client.post(f"/api/frames/{frame.pk}/submit/", {"boxes": []}, content_type="application/json")):
        assert response.status_code == 403
        assert "Labelling is for annotators and QA leads" in response.json()["detail"]
    assert client.get(f"/api/frames/{frame.pk}/").status_code == 200  # reading is fine
    frame.refresh_from_db()
    assert frame.leased_by is None and not Label.objects.exists()


def test_a_submit_against_suggestions_no_longer_current_is_a_409_until_the_frame_is_reloaded(
        client, shelf, company, products, monkeypatch):
    monkeypatch.setattr("annotator.services.workspace._deliver_outbox", lambda **company: None)
    frame = ready_frame(shelf, products)
    client.force_login(annotator(company))
    shown = client.post(f"/api/frames/{frame.pk}/lease/").json()["boxes"]
    first = shown[0]
    assert first["prediction_id"] == Prediction.objects.get(box_id=first["id"]).pk
    # Pre-labelled again meanwhile (a promoted model set): the first box now suggests another product.
    newer = PipelineVersion.objects.create(name="v2", config_digest="promoted")
    for i, box in enumerate(frame.boxes.order_by("pk")):
        Prediction.objects.create(box=box, pipeline_version=newer, product=products[1 if i == 0 else i], score=0.8,
                                  candidates=[])
    answers = [{"id": box["id"], "product_id": box["suggestion"]["id"]} for box in shown]  # all confirmed as shown

    stale = client.post(f"/api/frames/{frame.pk}/submit/",
                        {"boxes": answers, "shown_predictions": [box["prediction_id"] for box in shown]},
                        content_type="application/json")

    assert stale.status_code == 409 and "pre-labelled again" in stale.json()["detail"]
    assert not Label.objects.exists()
    frame.refresh_from_db()
    assert frame.status == Frame.Status.READY and frame.leased_by is not None
    # The client reloads the frame and sends what it shows now.
    reloaded = client.post(f"/api/frames/{frame.pk}/lease/").json()["boxes"]
    response = client.post(f"/api/frames/{frame.pk}/submit/",
                           {"boxes": answers, "shown_predictions": [box["prediction_id"] for box in reloaded]},
                           content_type="application/json")
    assert response.status_code == 200, response.content
    assert (response.json()["confirmed"], response.json()["corrected"]) == (2, 1)
    label = Label.objects.get(box_id=first["id"])
    assert (label.action, label.suggested_product_id, label.suggested_by) == ("corrected", products[1].pk, newer)


def test_frame_detail_boxes_carry_probability_calibrated_and_auto_accepted(client, shelf, company, products):
    frame = ready_frame(shelf, products, suggestions=(0, 1))
    first, second = Prediction.objects.filter(box__frame=frame).order_by("box_id")
    first.score, first.probability, first.auto_accepted = 1.7, 0.998, True
    first.save()
    second.score, second.probability = 1.3, None
    second.save()
    client.force_login(annotator(company))
    data = client.get(f"/api/frames/{frame.pk}/").json()
    assert "auto_accept_threshold" in data
    by_id = {b["id"]: b for b in data["boxes"]}
    assert (by_id[first.box_id]["probability"], by_id[first.box_id]["calibrated"],
            by_id[first.box_id]["auto_accepted"]) == (0.998, True, True)
    assert (by_id[second.box_id]["probability"], by_id[second.box_id]["calibrated"],
            by_id[second.box_id]["auto_accepted"]) == (1.0, False, False)
