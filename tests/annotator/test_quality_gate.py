"""The quality gate in the worker's pre-labelling: a frame it fails is skipped (with its reasons on
the frame) and never leased to an annotator; a QA lead forces it through; the frame JSON carries
the decision."""
from datetime import UTC, datetime, timedelta
from io import BytesIO

import numpy as np
import pytest
from django.core.files.base import ContentFile
from PIL import Image, ImageFilter

from annotator import selectors
from annotator.models import Frame, Prediction
from annotator.services.prelabel import prelabel_frame
from annotator.services.workspace import lease_next_frame
from tests.celery_sends import prelabel_sent_to
from tests.factories import BoxFactory, CompanyFactory, FrameFactory, ShelfFactory, UserFactory

pytestmark = pytest.mark.django_db

MONDAY = datetime(2024, 3, 4, 10, tzinfo=UTC)
SIZE = (320, 160)


@pytest.fixture(autouse=True)
def gate_on(settings):
    settings.QUALITY_GATE_ENABLED = True


def shelf_scene(seed: int = 0) -> np.ndarray:
    """A sharp made-up shelf: facings of random colours, each with fine texture (print, edges)."""
    rng = np.random.default_rng(0)
    height, width = SIZE[1], SIZE[0]
    colours = rng.integers(40, 220, size=(2, 12, 3))
    scene = np.repeat(np.repeat(colours, height // 2, axis=0), width // 12 + 1, axis=1)[:height, :width]
    texture = rng.normal(0, 28, size=(height, width, 1))
    noise = np.random.default_rng(seed).normal(0, 3, size=(height, width, 1))  # sensor noise: differs per frame
    return np.clip(scene + texture + noise, 0, 255).astype(np.uint8)


def png(pixels: np.ndarray, blur: float = 0.0) -> ContentFile:
    image = Image.fromarray(pixels)
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    buffer = BytesIO()
    image.save(buffer, "PNG")
    return ContentFile(buffer.getvalue(), name="frame.png")


def frame_of(shelf, image: ContentFile, day: int) -> Frame:
    frame = FrameFactory(shelf=shelf, image=image, width=SIZE[0], height=SIZE[1],
                         captured_at=MONDAY + timedelta(days=day))
    BoxFactory(frame=frame, x=10, y=10, w=40, h=60)
    return frame


def obstructed(pixels: np.ndarray) -> np.ndarray:
    """A person-sized flat dark region in front of the shelf."""
    covered = pixels.copy()
    covered[10:150, 100:220] = (55, 50, 60)
    return covered


def test_a_blurred_frame_is_skipped_with_its_reasons_and_writes_no_predictions(test_engines):
    shelf = ShelfFactory()
    blurred = frame_of(shelf, png(shelf_scene(), blur=4), day=0)

    result = prelabel_frame(frame_id=blurred.pk)

    blurred.refresh_from_db()
    assert result.status == blurred.status == Frame.Status.SKIPPED
    assert blurred.quality["passed"] is False and blurred.quality["forced"] is False
    assert blurred.quality["reasons"] == ["blur"]
    assert blurred.quality["scores"]["sharpness"] < 25
    assert blurred.status_reason.startswith("skipped by the quality gate: Laplacian variance")
    assert blurred.quality_signature is None and not blurred.scheduled
    assert (blurred.prelabel_token, blurred.prelabel_claimed_at) == ("", None)
    assert not Prediction.objects.filter(box__frame=blurred).exists()


def test_a_sharp_frame_passes_and_keeps_its_signature_for_the_cameras_later_frames(test_engines):
    shelf = ShelfFactory()
    sharp = frame_of(shelf, png(shelf_scene()), day=0)
    prelabel_frame(frame_id=sharp.pk)
    sharp.refresh_from_db()
    assert sharp.status == Frame.Status.READY
    assert sharp.quality["passed"] is True and sharp.quality["reasons"] == []
    assert np.asarray(sharp.quality_signature["cells"]).shape == (16, 24, 4)
    assert Prediction.objects.filter(box__frame=sharp).count() == 1


def test_an_obstructed_frame_is_skipped_against_the_cameras_accepted_frames(test_engines):
    shelf = ShelfFactory()
    for day in range(3):
        prelabel_frame(frame_id=frame_of(shelf, png(shelf_scene(seed=day)), day=day).pk)
    assert set(Frame.objects.values_list("status", flat=True)) == {Frame.Status.READY}
    covered = frame_of(shelf, png(obstructed(shelf_scene(seed=9))), day=3)
    clean = frame_of(shelf, png(shelf_scene(seed=10)), day=4)

    prelabel_frame(frame_id=covered.pk)
    prelabel_frame(frame_id=clean.pk)

    covered.refresh_from_db()
    clean.refresh_from_db()
    assert covered.status == Frame.Status.SKIPPED and "obstructed" in covered.quality["reasons"]
    assert covered.quality["scores"]["changed_share"] > 0.3
    assert clean.status == Frame.Status.READY and clean.quality["reasons"] == []


def test_the_gate_compares_a_frame_only_with_accepted_frames_of_its_camera_and_size(test_engines):
    shelf = ShelfFactory()
    accepted = frame_of(shelf, png(shelf_scene()), day=0)
    prelabel_frame(frame_id=accepted.pk)
    turned = FrameFactory(shelf=shelf, image=png(shelf_scene().transpose(1, 0, 2).copy()), width=SIZE[1],
                          height=SIZE[0], captured_at=MONDAY + timedelta(days=1))
    prelabel_frame(frame_id=turned.pk)
    later = frame_of(shelf, png(shelf_scene(seed=1)), day=2)
    elsewhere = frame_of(ShelfFactory(), png(shelf_scene(seed=2)), day=2)
    assert Frame.objects.get(pk=turned.pk).status == Frame.Status.READY

    assert [ref.boxes for ref in selectors.gate_references(frame=later, limit=5)] == [1]
    assert selectors.gate_references(frame=later, limit=5)[0].signature == Frame.objects.get(
        pk=accepted.pk).quality_signature
    assert selectors.gate_references(frame=elsewhere, limit=5) == []
    assert selectors.gate_references(frame=accepted, limit=5) == []  # nothing before it


def test_a_skipped_frame_is_never_leased_by_the_next_frame_selector(test_engines):
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    sharp = [frame_of(shelf, png(shelf_scene(seed=day)), day=day * 4) for day in range(2)]
    blurred = frame_of(shelf, png(shelf_scene(), blur=4), day=12)
    for frame in [*sharp, blurred]:
        prelabel_frame(frame_id=frame.pk)
    # Even marked by the schedule, a skipped frame is not open for labelling.
    Frame.objects.filter(pk=blurred.pk).update(scheduled=True)
    assert Frame.objects.filter(scheduled=True).count() == 3

    leased = [lease_next_frame(user=UserFactory(company=company, role="annotator")) for _ in range(3)]

    assert [frame.pk if frame else None for frame in leased] == [sharp[0].pk, sharp[1].pk, None]
    blurred.refresh_from_db()
    assert blurred.status == Frame.Status.SKIPPED and blurred.leased_by is None


def test_a_qa_lead_forces_a_skipped_frame_through_pre_labelling_without_the_gate(
        client, test_engines, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr("backend.celery.app.send_task", prelabel_sent_to(sent.append))
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    blurred = frame_of(shelf, png(shelf_scene(), blur=4), day=0)
    prelabel_frame(frame_id=blurred.pk)

    client.force_login(UserFactory(company=company, role="annotator"))
    assert client.post(f"/api/frames/{blurred.pk}/force/").status_code == 403
    client.force_login(UserFactory(company=CompanyFactory(), role="qa_lead"))
    assert client.post(f"/api/frames/{blurred.pk}/force/").status_code == 404
    assert sent == []

    client.force_login(UserFactory(company=company, role="qa_lead"))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/frames/{blurred.pk}/force/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == Frame.Status.QUEUED
    assert body["quality"]["forced"] is True and body["quality"]["reasons"] == ["blur"]
    assert sent == [blurred.pk]
    again = client.post(f"/api/frames/{blurred.pk}/force/")
    assert again.status_code == 409 and "not skipped" in again.json()["detail"]

    prelabel_frame(frame_id=blurred.pk)  # what the worker does with the task sent

    blurred.refresh_from_db()
    assert blurred.status == Frame.Status.READY
    assert blurred.quality["forced"] is True and blurred.quality["passed"] is True
    assert blurred.quality["reasons"] == ["blur"]  # what the gate said, kept
    assert blurred.quality_signature is not None
    assert Prediction.objects.filter(box__frame=blurred).count() == 1
    annotator = UserFactory(company=company, role="annotator")
    assert lease_next_frame(user=annotator).pk == blurred.pk


def test_the_frame_json_carries_the_gates_decision(client, test_engines):
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    blurred = frame_of(shelf, png(shelf_scene(), blur=4), day=0)
    unjudged = frame_of(shelf, png(shelf_scene()), day=1)
    prelabel_frame(frame_id=blurred.pk)
    client.force_login(UserFactory(company=company, role="annotator"))

    detail = client.get(f"/api/frames/{blurred.pk}/").json()
    listing = {row["id"]: row for row in client.get("/api/frames/").json()["results"]}

    assert detail["status"] == "skipped"
    assert set(detail["quality"]) == {"passed", "forced", "reasons", "scores", "details"}
    assert detail["quality"]["passed"] is False and detail["quality"]["reasons"] == ["blur"]
    assert isinstance(detail["quality"]["scores"]["sharpness"], float)
    assert "blur" in detail["quality"]["details"]
    assert listing[blurred.pk]["quality"] == detail["quality"]
    assert listing[unjudged.pk]["quality"] is None


def test_with_the_gate_off_every_frame_is_pre_labelled(settings, test_engines):
    settings.QUALITY_GATE_ENABLED = False
    blurred = frame_of(ShelfFactory(), png(shelf_scene(), blur=4), day=0)
    prelabel_frame(frame_id=blurred.pk)
    blurred.refresh_from_db()
    assert blurred.status == Frame.Status.READY and blurred.quality is None
