"""Tenancy: a user of company A finds nothing of company B. Every page and endpoint that names one of
B's objects answers 404 (as if it did not exist), and every list, report and search leaves B out."""
from __future__ import annotations

import numpy as np
import pytest
from django.core.files.base import ContentFile

from annotator.models import BoxEmbedding, Frame, Label, ModelVersion, PipelineVersion, Prediction, ProductImage
from annotator.services.labels import Decision, record_labels
from tests.factories import (
    BoxFactory,
    FrameFactory,
    ProductFactory,
    ShelfFactory,
    UserFactory,
    shelf_image,
)

pytestmark = pytest.mark.django_db


def company_data(name: str) -> dict:
    """A company with a catalogue (with a photo), a labelled frame whose crops have embeddings, and a
    pre-labelled frame waiting in the queue."""
    shelf = ShelfFactory(camera__store__company__name=name)
    company = shelf.camera.store.company
    products = [ProductFactory(company=company, name=f"{name} milk {i}") for i in range(2)]
    ProductImage.objects.create(product=products[0], image=ContentFile(shelf_image((40, 40)), name="milk.jpg"),
                                checksum=f"{name:0>64}", is_primary=True)
    labelled = FrameFactory(shelf=shelf, status=Frame.Status.LABELLED)
    boxes = [BoxFactory(frame=labelled, x=10 + 50 * i) for i in range(4)]
    annotator = UserFactory(username=f"{name}-annotator", company=company, role="annotator")
    record_labels(decisions=[Decision(box=b, product=products[i % 2], action=Label.Action.CONFIRMED)
                             for i, b in enumerate(boxes)], annotator=annotator)
    embedder, _ = ModelVersion.objects.get_or_create(name="tiny", kind=ModelVersion.Kind.EMBEDDER)
    rng = np.random.default_rng(len(name))
    for box in boxes:
        BoxEmbedding.objects.create(box=box, embedder=embedder,
                                    vector=rng.normal(size=8).astype(np.float16).tobytes())
    queued = FrameFactory(shelf=shelf, status=Frame.Status.READY, scheduled=True)
    box = BoxFactory(frame=queued)
    version, _ = PipelineVersion.objects.get_or_create(name="v2", config_digest="tenancy", defaults={"embedder": embedder})
    Prediction.objects.create(box=box, pipeline_version=version, product=products[0], score=0.9,
                              candidates=[{"product_id": products[0].pk, "score": 0.9, "components": {"knn": 0.9}}])
    return {"company": company, "shelf": shelf, "products": products, "labelled": labelled, "boxes": boxes,
            "queued": queued, "queued_box": box, "annotator": annotator,
            "admin": UserFactory(username=f"{name}-admin", company=company, role="admin")}


@pytest.fixture
def a():
    return company_data("acme")


@pytest.fixture
def b():
    return company_data("bolt")


def b_urls(b: dict) -> list[tuple[str, str, dict | None]]:
    frame, queued, box, product = b["labelled"], b["queued"], b["boxes"][0], b["products"][0]
    return [
        ("get", f"/frames/{frame.pk}/", None),
        ("get", f"/frames/{queued.pk}/label/", None),
        ("post", f"/frames/{frame.pk}/retry/", {}),
        ("get", f"/review/{product.pk}/", None),
        ("get", f"/boxes/{box.pk}/crop.jpg", None),
        ("get", "/media/" + frame.image.name, None),
        ("get", "/media/" + product.images.get().image.name, None),
        ("get", f"/api/frames/{frame.pk}/", None),
        ("post", f"/api/frames/{queued.pk}/lease/", {}),
        ("delete", f"/api/frames/{queued.pk}/lease/", None),
        ("post", f"/api/frames/{queued.pk}/submit/",
         {"boxes": [{"id": b["queued_box"].pk, "product_id": product.pk}]}),
        ("get", f"/api/boxes/{box.pk}/history/", None),
    ]


def request(client, method: str, url: str, body: dict | None):
    if body is None:
        return getattr(client, method)(url)
    return getattr(client, method)(url, body, content_type="application/json")


def test_every_page_and_endpoint_naming_another_companys_object_is_a_404(client, a, b):
    client.force_login(a["admin"])  # the role that may do the most, short of a platform superuser
    for method, url, body in b_urls(b):
        response = request(client, method, url, body)
        assert response.status_code == 404, (method, url, response.status_code)
    # Nothing of B's changed: its queued frame is not leased, not labelled, its labels are as they were.
    queued = Frame.objects.get(pk=b["queued"].pk)
    assert queued.status == Frame.Status.READY and queued.leased_by is None
    assert Label.objects.filter(box__frame__company=b["company"], annotator=a["admin"]).count() == 0


def test_the_same_requests_succeed_for_the_companys_own_users(client, b):
    """The 404s above are tenancy, not broken URLs: B's own admin gets each of them."""
    client.force_login(b["admin"])
    for method, url, body in b_urls(b):
        response = request(client, method, url, body)
        assert response.status_code in (200, 204, 302), (method, url, response.status_code)


def ids(response) -> set[int]:
    body = response.json()
    rows = body["results"] if isinstance(body, dict) and "results" in body else body
    return {row["id"] for row in rows}


def test_lists_and_search_leave_other_companies_out(client, a, b):
    client.force_login(a["admin"])
    assert ids(client.get("/api/frames/")) == {a["labelled"].pk, a["queued"].pk}
    assert ids(client.get("/api/products/")) == {p.pk for p in a["products"]}
    assert ids(client.get("/api/products/search/?q=milk")) == {p.pk for p in a["products"]}
    # Ordering by another company's store assortment reveals nothing either.
    searched = client.get(f"/api/products/search/?q=milk&store={b['shelf'].camera.store_id}")
    assert ids(searched) == {p.pk for p in a["products"]}
    page = client.get("/").content.decode()
    assert f"/frames/{a['labelled'].pk}/" in page and f"/frames/{b['labelled'].pk}/" not in page


def test_the_queue_never_hands_out_another_companys_frame(client, a, b):
    client.force_login(a["admin"])
    served = client.post("/api/frames/next/")
    assert served.status_code == 200 and served.json()["id"] == a["queued"].pk
    client.post(f"/api/frames/{a['queued'].pk}/submit/",
                {"boxes": [{"id": a["queued_box"].pk, "product_id": a["products"][0].pk}]},
                content_type="application/json")
    assert client.post("/api/frames/next/").status_code == 204  # B's ready frame is not A's work


def test_reports_count_only_the_companys_decisions(client, a, b):
    client.force_login(a["admin"])
    rows = client.get("/api/reports/confirm-rate/?by=annotator").json()
    assert [(row["group"], row["boxes"]) for row in rows] == [("acme-annotator", 4)]
    csv = client.get("/api/reports/confirm-rate/?by=store&format=csv").content.decode()
    assert a["shelf"].camera.store.code in csv and b["shelf"].camera.store.code not in csv
    suspicious = client.get("/api/reports/suspicious-products/").json()
    assert {row["product"]["id"] for row in suspicious["products"]} <= {p.pk for p in a["products"]}
    assert suspicious["products"], "the report has A's products to show"
    review_page = client.get("/review/").content.decode()
    assert "acme milk" in review_page and "bolt milk" not in review_page


def test_writes_naming_another_companys_objects_are_refused_and_change_nothing(client, a, b):
    client.force_login(a["admin"])
    labels_before = list(Label.objects.order_by("pk").values_list("pk", "box_id", "product_id", "is_current"))
    # A QA review of B's boxes, or of A's boxes into B's product.
    theirs = client.post("/api/review/", {"box_ids": [b["boxes"][0].pk], "action": "ok"},
                         content_type="application/json")
    into_theirs = client.post("/api/review/", {"box_ids": [a["boxes"][0].pk], "action": "relabel",
                                               "product_id": b["products"][0].pk}, content_type="application/json")
    # A's own frame submitted with B's product.
    client.post(f"/api/frames/{a['queued'].pk}/lease/")
    submit = client.post(f"/api/frames/{a['queued'].pk}/submit/",
                         {"boxes": [{"id": a["queued_box"].pk, "product_id": b["products"][0].pk}]},
                         content_type="application/json")
    # An upload onto B's shelf.
    upload = client.post("/api/frames/", {"shelf": b["shelf"].pk,
                                          "image": ContentFile(shelf_image(), name="shelf.jpg")})
    for response in (theirs, into_theirs, submit, upload):
        assert response.status_code == 400, response.content
    assert "not one of yours" in str(theirs.json())
    assert "Unknown product" in str(submit.json())
    assert "does not exist" in str(upload.json()["shelf"])
    assert list(Label.objects.order_by("pk").values_list("pk", "box_id", "product_id", "is_current")) == labels_before
    assert not Frame.objects.filter(company=b["company"]).exclude(pk__in=[b["labelled"].pk, b["queued"].pk]).exists()


def test_a_company_admin_is_not_a_platform_superuser(client, a, b):
    """The admin role runs its company in the app; Django's admin, which lists every company's rows,
    is for superusers only."""
    client.force_login(a["admin"])
    assert not a["admin"].is_superuser
    response = client.get("/admin/annotator/frame/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_a_role_in_one_company_is_not_a_role_in_another(client, a, b):
    """Roles are memberships': a QA lead of A who manages B labels and reviews A's work only, while
    B's frames and crops stay readable to them as a manager's."""
    person = UserFactory(username="both", company=a["company"], role="qa_lead")
    person.memberships.create(company=b["company"], role="manager")
    client.force_login(person)
    assert client.get(f"/frames/{b['labelled'].pk}/").status_code == 200  # reading B is fine

    refusals = [
        ("get", f"/frames/{b['queued'].pk}/label/", None),
        ("post", f"/frames/{b['labelled'].pk}/retry/", {}),
        ("get", f"/review/{b['products'][0].pk}/", None),
        ("post", f"/api/frames/{b['queued'].pk}/lease/", {}),
        ("post", f"/api/frames/{b['queued'].pk}/submit/",
         {"boxes": [{"id": b["queued_box"].pk, "product_id": b["products"][0].pk}]}),
        ("post", "/api/review/", {"box_ids": [b["boxes"][0].pk], "action": "ok"}),
    ]
    for method, url, body in refusals:
        response = request(client, method, url, body)
        assert response.status_code == 403, (method, url, response.status_code)
    upload = client.post("/api/frames/", {"shelf": b["shelf"].pk, "image": ContentFile(shelf_image(), name="shelf.jpg")})
    assert upload.status_code == 403, upload.content
    # The queue hands out A's frame, never B's, which is not theirs to label.
    served = client.post("/api/frames/next/")
    assert served.status_code == 200 and served.json()["id"] == a["queued"].pk
    assert Frame.objects.get(pk=b["queued"].pk).leased_by is None
    assert not Label.objects.filter(annotator=person).exists()
    assert not Frame.objects.filter(company=b["company"]).exclude(pk__in=[b["labelled"].pk, b["queued"].pk]).exists()

    # In A the same person labels and reviews.
    assert client.get(f"/frames/{a['queued'].pk}/label/").status_code == 200
    assert client.get(f"/review/{a['products'][0].pk}/").status_code == 200
    reviewed = client.post("/api/review/", {"box_ids": [a["boxes"][0].pk], "action": "ok"},
                           content_type="application/json")
    assert reviewed.status_code == 200, reviewed.content
