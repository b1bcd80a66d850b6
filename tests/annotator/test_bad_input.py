"""Bad input gets a 4xx that says what is wrong, and nothing is half-written: uploads that are not
images, are truncated, too large or too many pixels; references to shelves that are not the user's;
two submits of one frame at the same moment."""
from __future__ import annotations

import threading

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test import Client

from annotator.models import Frame, Label, PipelineVersion, Prediction
from tests.factories import BoxFactory, CompanyFactory, FrameFactory, ProductFactory, ShelfFactory, UserFactory, shelf_image


@pytest.fixture
def shelf(db):
    return ShelfFactory()


@pytest.fixture
def uploader(shelf):
    return UserFactory(username="uploader", company=shelf.camera.store.company, role="annotator")


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    frame_ids: list[int] = []
    monkeypatch.setattr("annotator.services.prelabel_queue.queue_prelabelling",
                        lambda *, frame_id: frame_ids.append(frame_id))
    return frame_ids


def upload(client, shelf, data: bytes, name: str = "shelf.jpg", **fields):
    return client.post("/api/frames/", {"shelf": shelf.pk, "image": ContentFile(data, name=name)} | fields)


def stored_files(media_root) -> list:
    return [p for p in media_root.rglob("*") if p.is_file()] if media_root.exists() else []


def test_an_uploaded_frame_is_registered_once_and_queued(client, shelf, uploader, queued,
                                                         django_capture_on_commit_callbacks):
    client.force_login(uploader)
    image = shelf_image((200, 100))
    with django_capture_on_commit_callbacks(execute=True):
        created = upload(client, shelf, image, captured_at="2026-11-30T09:30:00Z")
    assert created.status_code == 201, created.content
    body = created.json()
    frame = Frame.objects.get(pk=body["id"])
    assert (frame.width, frame.height, frame.status, frame.shelf) == (200, 100, Frame.Status.QUEUED, shelf)
    assert frame.captured_at.isoformat() == "2026-11-30T09:30:00+00:00"
    assert queued == [frame.pk]
    with django_capture_on_commit_callbacks(execute=True):
        again = upload(client, shelf, image, name="same-again.jpg")
    assert again.status_code == 200 and again.json()["id"] == frame.pk
    assert queued == [frame.pk] and Frame.objects.count() == 1


@pytest.mark.parametrize("data, name, message", [
    (b"GIF89a, or so it says", "fake.gif", "not a readable image"),
    (b"%PDF-1.7 a price list", "prices.pdf", "not a readable image"),
    (shelf_image((400, 300))[:1500], "truncated.jpg", "not a readable image"),
    (b"", "empty.jpg", "The submitted file is empty"),
])
def test_an_upload_that_is_not_an_image_is_a_400_and_stores_nothing(client, shelf, uploader, queued, media_root,
                                                                    data, name, message):
    client.force_login(uploader)
    response = upload(client, shelf, data, name=name)
    assert response.status_code == 400
    assert message in str(response.json()["image"])
    assert not Frame.objects.exists() and not stored_files(media_root) and not queued


def test_too_many_pixels_is_a_400(client, shelf, uploader, queued, media_root, monkeypatch):
    """A decompression bomb: a small file that decodes to a huge image."""
    monkeypatch.setattr("PIL.Image.MAX_IMAGE_PIXELS", 1000)
    client.force_login(uploader)
    response = upload(client, shelf, shelf_image((320, 160), fmt="PNG"), name="bomb.png")
    assert response.status_code == 400 and "decompression bomb" in str(response.json()["image"])
    assert not Frame.objects.exists() and not stored_files(media_root)


def test_a_large_upload_is_refused_by_size(client, shelf, uploader, queued, media_root, settings):
    image = shelf_image((320, 160))
    settings.FRAME_UPLOAD_MAX_BYTES = len(image) - 1
    client.force_login(uploader)
    response = upload(client, shelf, image)
    assert response.status_code == 400 and f"the limit is {len(image) - 1}" in str(response.json()["image"])
    settings.FRAME_UPLOAD_MAX_BYTES = 1000
    huge = upload(client, shelf, b"\xff" * 200_000, name="huge.jpg")
    assert huge.status_code == 413 and "larger than the 1000-byte limit" in huge.json()["detail"]
    assert not Frame.objects.exists() and not stored_files(media_root)


def test_upload_fields_are_checked(client, shelf, uploader, queued):
    client.force_login(uploader)
    no_image = client.post("/api/frames/", {"shelf": shelf.pk})
    assert no_image.status_code == 400 and "No file was submitted" in str(no_image.json()["image"])
    unknown = client.post("/api/frames/", {"shelf": 999999, "image": ContentFile(shelf_image(), name="a.jpg")})
    assert unknown.status_code == 400 and "does not exist" in str(unknown.json()["shelf"])
    not_a_date = upload(client, shelf, shelf_image(), captured_at="yesterday")
    assert not_a_date.status_code == 400 and "Datetime has wrong format" in str(not_a_date.json()["captured_at"])
    as_json = client.post("/api/frames/", {"shelf": shelf.pk}, content_type="application/json")
    assert as_json.status_code == 415
    assert not Frame.objects.exists()


def test_managers_do_not_upload(client, shelf):
    client.force_login(UserFactory(company=shelf.camera.store.company, role="manager"))
    assert upload(client, shelf, shelf_image()).status_code == 403
    assert not Frame.objects.exists()


@pytest.mark.parametrize("body", [
    '{"boxes": [{"id": 1, "product_id": NaN}]}',
    '{"boxes": [{"bbox": [0, 0, Infinity, 10], "product_id": 1}]}',
    '{"boxes": "all of them"}',
    '{"boxes": [',
])
def test_malformed_submissions_are_a_400(client, db, body):
    frame = FrameFactory(status=Frame.Status.READY)
    client.force_login(UserFactory(company=frame.company, role="annotator"))
    response = client.post(f"/api/frames/{frame.pk}/submit/", body, content_type="application/json")
    assert response.status_code == 400 and response.json()
    assert not Label.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_submits_of_one_frame_at_once_record_it_once(monkeypatch):
    """Two tabs (or a double click) submit the same frame at the same moment: one wins, the other
    gets a 409, and the frame has exactly one label per box."""
    monkeypatch.setattr("annotator.services.workspace._deliver_outbox", lambda **company: None)
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    products = [ProductFactory(company=company) for _ in range(2)]
    frame = FrameFactory(shelf=shelf, status=Frame.Status.READY, scheduled=True)
    boxes = [BoxFactory(frame=frame, x=10 + 50 * i) for i in range(3)]
    version = PipelineVersion.objects.create(name="v2", config_digest="race")
    for box in boxes:
        Prediction.objects.create(box=box, pipeline_version=version, product=products[0], score=0.9, candidates=[])
    user = UserFactory(company=company, role="annotator")
    answers = [
        {"boxes": [{"id": b.pk, "product_id": products[0].pk} for b in boxes]},
        {"boxes": [{"id": b.pk, "product_id": products[1].pk} for b in boxes] + [
            {"bbox": [5, 5, 20, 20], "product_id": products[1].pk}]},
    ]
    start = threading.Barrier(2)
    responses: list = [None, None]

    def submit(i: int) -> None:
        try:
            client = Client()
            client.force_login(user)
            start.wait()
            responses[i] = client.post(f"/api/frames/{frame.pk}/submit/", answers[i], content_type="application/json")
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 409], [r.content for r in responses]
    loser = next(r for r in responses if r.status_code == 409)
    assert "already submitted" in loser.json()["detail"]
    winner = responses.index(next(r for r in responses if r.status_code == 200))
    labels = Label.objects.filter(box__frame=frame)
    assert labels.count() == len(answers[winner]["boxes"])
    assert set(labels.values_list("product_id", flat=True)) == {products[winner].pk}
    assert frame.boxes.count() == len(answers[winner]["boxes"])  # the loser's new box was not kept


def test_numbers_too_large_for_a_database_id_are_refused(client, db):
    client.force_login(UserFactory(company=CompanyFactory(), role="qa_lead"))
    huge = "9" * 30
    assert client.get(f"/api/frames/{huge}/").status_code == 404
    assert client.get(f"/frames/{huge}/").status_code == 404
    search = client.get("/api/products/search/", {"store": huge})
    assert search.status_code == 400 and "less than or equal to" in str(search.json()["store"])
    review = client.post("/api/review/", {"box_ids": [int(huge)], "action": "ok"}, content_type="application/json")
    assert review.status_code == 400 and "less than or equal to" in str(review.json()["box_ids"])
