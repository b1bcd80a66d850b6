"""Pages and API: login required everywhere, data scoped to the user's companies, bounded queries."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotator.models import Frame, PipelineVersion, Prediction
from tests.factories import BoxFactory, CompanyFactory, FrameFactory, ProductFactory, ShelfFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def scene():
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    frame = FrameFactory(shelf=shelf, status=Frame.Status.READY)
    product = ProductFactory(company=company, name="Oat milk")
    version = PipelineVersion.objects.create(name="v0")
    boxes = [BoxFactory(frame=frame, x=10 * i, y=5) for i in range(3)]
    for box in boxes:
        Prediction.objects.create(box=box, pipeline_version=version, product=product, score=0.91,
                                  candidates=[{"product_id": product.pk, "score": 0.91, "components": {"knn": 0.91}}])
    user = UserFactory(company=company, role="annotator")
    return {"frame": frame, "product": product, "boxes": boxes, "user": user, "company": company}


@pytest.mark.parametrize("url", ["/", "/frames/1/", "/api/frames/", "/api/frames/1/", "/api/products/", "/api/schema/",
                                 "/media/frames/x.jpg"])
def test_login_is_required_everywhere(client, url):
    response = client.get(url)
    assert response.status_code in (302, 401, 403)
    if response.status_code == 302:
        assert response["Location"].startswith(reverse("login"))


def test_login_page_is_public(client):
    assert client.get(reverse("login")).status_code == 200


def test_frame_list_and_detail_show_suggestions(client, scene):
    client.force_login(scene["user"])
    listing = client.get("/")
    assert listing.status_code == 200
    assert f"#{scene['frame'].pk}".encode() in listing.content
    detail = client.get(reverse("annotator:frame-detail", args=[scene["frame"].pk]))
    assert detail.status_code == 200
    assert detail.content.count(b"Oat milk") >= 3


def test_frame_list_filters_by_status(client, scene):
    FrameFactory(shelf=scene["frame"].shelf, status=Frame.Status.FAILED, status_reason="broken image")
    client.force_login(scene["user"])
    body = client.get("/?status=failed").content.decode()
    assert "broken image" in body
    assert f"#{scene['frame'].pk}<" not in body


def test_api_frame_detail_has_boxes_with_candidates(client, scene):
    client.force_login(scene["user"])
    data = client.get(f"/api/frames/{scene['frame'].pk}/").json()
    assert [box["id"] for box in data["boxes"]] == [box.pk for box in scene["boxes"]]
    first = data["boxes"][0]
    assert first["suggestion"]["name"] == "Oat milk"
    assert first["candidates"][0]["components"]["knn"] == 0.91
    assert first["bbox"] == [0.0, 5.0, 40.0, 60.0]


def test_another_companys_frame_is_not_found(client, scene):
    outsider = UserFactory(company=CompanyFactory(), role="annotator")
    client.force_login(outsider)
    assert client.get(reverse("annotator:frame-detail", args=[scene["frame"].pk])).status_code == 404
    assert client.get(f"/api/frames/{scene['frame'].pk}/").status_code == 404
    assert client.get("/api/frames/").json()["count"] == 0
    assert client.get("/api/products/").json()["count"] == 0


def test_frame_view_queries_do_not_grow_with_boxes(client, scene):
    client.force_login(scene["user"])
    url = f"/api/frames/{scene['frame'].pk}/"
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    version = PipelineVersion.objects.get(name="v0")
    for i in range(30):
        box = BoxFactory(frame=scene["frame"], x=i, y=i)
        Prediction.objects.create(box=box, pipeline_version=version, product=scene["product"], score=0.5, candidates=[])
    with CaptureQueriesContext(connection) as many:
        client.get(url)
    assert len(many) == len(few)


def test_openapi_schema_describes_the_api(client, scene):
    client.force_login(scene["user"])
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/frames/", "/api/frames/{frame_id}/", "/api/products/"} <= set(paths)


@pytest.mark.parametrize("url", ["/", "/api/frames/"])
def test_frame_lists_queries_do_not_grow_with_frames(client, scene, url):
    client.force_login(scene["user"])
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    for i in range(15):
        FrameFactory(shelf=ShelfFactory(camera__store__company=scene["company"]), checksum=f"{i + 100:064d}",
                     status=Frame.Status.FAILED, status_reason="unreadable")
    with CaptureQueriesContext(connection) as many:
        assert client.get(url).status_code == 200
    assert len(many) == len(few)
