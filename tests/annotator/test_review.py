"""QA leads' review: relabel / remove / mark OK in bulk, audited, into the search space, by role."""
import pytest

from annotator.models import Label, SearchSpaceOutbox
from annotator.services.labels import Decision, record_labels
from tests.factories import BoxFactory, CompanyFactory, FrameFactory, ProductFactory, ShelfFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def crops():
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    products = [ProductFactory(company=company, name=name) for name in ("Oat milk", "Soy milk")]
    frame = FrameFactory(shelf=shelf)
    boxes = [BoxFactory(frame=frame, x=10 * i) for i in range(3)]
    annotator = UserFactory(username="ann", company=company, role="annotator")
    record_labels(decisions=[Decision(box=b, product=products[0], action=Label.Action.CONFIRMED) for b in boxes],
                  annotator=annotator)
    SearchSpaceOutbox.objects.all().delete()
    return {"company": company, "products": products, "boxes": boxes, "annotator": annotator,
            "qa": UserFactory(username="qa", company=company, role="qa_lead"),
            "manager": UserFactory(username="boss", company=company, role="manager")}


def post(client, user, **body):
    client.force_login(user)
    return client.post("/api/review/", body, content_type="application/json")


def test_a_qa_lead_relabels_removes_and_marks_ok_and_each_change_is_audited(client, crops):
    first, second, third = crops["boxes"]
    oat, soy = crops["products"]
    relabelled = post(client, crops["qa"], box_ids=[first.pk, second.pk], action="relabel", product_id=soy.pk)
    assert relabelled.status_code == 200 and relabelled.json() == {"reviewed": 2, "changed": 2}
    assert post(client, crops["qa"], box_ids=[third.pk], action="ok").json() == {"reviewed": 1, "changed": 0}
    assert post(client, crops["qa"], box_ids=[second.pk], action="remove").json() == {"reviewed": 1, "changed": 1}

    current = {label.box_id: label for label in Label.objects.filter(is_current=True)}
    assert current[first.pk].product == soy and current[first.pk].action == Label.Action.REVIEWED
    assert current[second.pk].product is None and current[second.pk].action == Label.Action.REMOVED
    assert current[third.pk].product == oat and current[third.pk].action == Label.Action.REVIEWED

    history = client.get(f"/api/boxes/{second.pk}/history/").json()
    assert [(h["action"], h["product"], h["by"]) for h in history] == [
        ("confirmed", "Oat milk", "ann"), ("reviewed", "Soy milk", "qa"), ("removed", None, "qa")]
    assert [h["is_current"] for h in history] == [False, False, True]
    # Into the search space: relabelled crops upserted, the removed one deleted.
    queued = list(SearchSpaceOutbox.objects.order_by("pk").values_list("box_key", "operation"))
    assert queued == [(first.pk, "upsert"), (second.pk, "upsert"), (third.pk, "upsert"), (second.pk, "delete")]


@pytest.mark.parametrize("role", ["manager", "annotator"])
def test_managers_and_annotators_do_not_relabel(client, crops, role):
    response = post(client, crops[role], box_ids=[crops["boxes"][0].pk], action="relabel",
                    product_id=crops["products"][1].pk)
    assert response.status_code == 403 and "Only QA leads" in response.json()["detail"]
    assert Label.objects.filter(action=Label.Action.REVIEWED).count() == 0


def test_bad_reviews_change_nothing(client, crops):
    box = crops["boxes"][0]
    foreign = ProductFactory(company=CompanyFactory())
    theirs = BoxFactory(frame=FrameFactory())
    cases = [
        ({"box_ids": [box.pk], "action": "relabel"}, "needs a product"),
        ({"box_ids": [box.pk], "action": "relabel", "product_id": foreign.pk}, "needs a product"),
        ({"box_ids": [box.pk, theirs.pk], "action": "ok"}, f"Box {theirs.pk} is not one of yours"),
        ({"box_ids": [box.pk, box.pk], "action": "ok"}, "listed twice"),
        ({"box_ids": [box.pk], "action": "burn"}, "is not a valid choice"),
        ({"box_ids": [], "action": "ok"}, "Ensure this field has at least 1 elements"),
    ]
    for body, message in cases:
        response = post(client, crops["qa"], **body)
        assert response.status_code == 400 and message in str(response.json()), body
    assert Label.objects.count() == 3


def test_another_companys_box_history_is_not_found(client, crops):
    client.force_login(UserFactory(company=CompanyFactory(), role="qa_lead"))
    assert client.get(f"/api/boxes/{crops['boxes'][0].pk}/history/").status_code == 404


@pytest.mark.parametrize("role", ["manager", "annotator"])
def test_the_review_pages_are_for_qa_leads(client, crops, role):
    client.force_login(crops[role])
    assert client.get("/review/").status_code == 403
    assert client.get(f"/review/{crops['products'][0].pk}/").status_code == 403
    assert "Review</a>" not in client.get("/").content.decode()
    client.force_login(crops["qa"])
    assert client.get("/review/").status_code == 200
    assert client.get(f"/review/{crops['products'][0].pk}/").status_code == 200


def test_a_crop_image_is_served_only_to_its_company(client, crops):
    box = crops["boxes"][0]
    client.force_login(crops["annotator"])
    response = client.get(f"/boxes/{box.pk}/crop.jpg")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert response.content[:2] == b"\xff\xd8"
    client.force_login(UserFactory(company=CompanyFactory(), role="qa_lead"))
    assert client.get(f"/boxes/{box.pk}/crop.jpg").status_code == 404


def test_the_review_reads_more_embeddings_than_sqlite_takes_parameters(crops):
    """The review reads the embedding of every labelled crop of the user's companies: more box ids
    than one statement may carry on SQLite's default build (32,766), read in chunks."""
    import sqlite3

    import numpy as np
    from django.db import connection

    from annotator import selectors
    from annotator.models import BoxEmbedding, ModelVersion

    embedder = ModelVersion.objects.create(kind=ModelVersion.Kind.EMBEDDER, name="tiny")
    stored = crops["boxes"][:2]
    for index, box in enumerate(stored):
        BoxEmbedding.objects.create(box=box, embedder=embedder, vector=np.full(4, index, np.float16).tobytes())
    box_ids = [box.pk for box in crops["boxes"]] + list(range(10**6, 10**6 + 40_000))
    connection.ensure_connection()
    if connection.vendor == "sqlite":
        raw = connection.connection
        limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32_766)
    try:
        vectors = selectors.stored_vectors(box_ids=box_ids, embedder_version=embedder)
    finally:
        if connection.vendor == "sqlite":
            raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
    assert sorted(vectors) == [box.pk for box in stored]
    assert vectors[stored[1].pk].tolist() == [1.0] * 4


@pytest.fixture
def noisy_catalogue():
    """Oat milk: 20 crops, 4 of them looking like soy milk; Soy milk: 20 clean crops; Rice milk:
    3 crops that all look like oat milk (every one suspicious, but only 3)."""
    import numpy as np

    from annotator.models import BoxEmbedding, ModelVersion
    from tests.factories import LabelFactory, PipelineVersionFactory

    shelf = ShelfFactory()
    company = shelf.camera.store.company
    oat, soy, rice = (ProductFactory(company=company, name=name) for name in ("Oat milk", "Soy milk", "Rice milk"))
    embedder = ModelVersion.objects.create(kind=ModelVersion.Kind.EMBEDDER, name="tiny")
    PipelineVersionFactory(name="v2", embedder=embedder)
    rng = np.random.default_rng(0)
    centre = {"oat": np.eye(8)[0] * 3, "soy": np.eye(8)[1] * 3}
    frame = FrameFactory(shelf=shelf)
    planted = [(oat, "oat")] * 16 + [(oat, "soy")] * 4 + [(soy, "soy")] * 20 + [(rice, "oat")] * 3
    for i, (product, looks) in enumerate(planted):
        box = BoxFactory(frame=frame, x=i)
        LabelFactory(box=box, product=product, action=Label.Action.CONFIRMED)
        vector = centre[looks] + 0.1 * rng.normal(size=8)
        BoxEmbedding.objects.create(box=box, embedder=embedder, vector=vector.astype(np.float16).tobytes())
    return {"products": (oat, soy, rice), "qa": UserFactory(username="qa", company=company, role="qa_lead")}


def test_each_suspicious_product_carries_its_sample_size_and_interval_and_small_samples_rank_last(noisy_catalogue):
    from annotator import selectors
    from inference.stats import wilson_interval

    oat, soy, rice = noisy_catalogue["products"]
    rows = selectors.label_noise_report(noisy_catalogue["qa"]).products
    by_name = {row.product.name: row for row in rows}
    assert (by_name["Oat milk"].crops, by_name["Oat milk"].suspicious) == (20, 4)
    assert by_name["Rice milk"].crops == 3 and by_name["Rice milk"].share > by_name["Oat milk"].share
    # The worst share, but of 3 crops: after every product with enough crops, and marked.
    assert [row.product for row in rows] == [oat, soy, rice]
    assert [row.small_sample for row in rows] == [False, False, True]
    assert by_name["Oat milk"].interval == wilson_interval(4, 20)
    low, high = by_name["Rice milk"].interval
    assert high == 1.0 and low < 0.5  # 3 of 3 suspicious: a wide interval, not a certain 1.0
    # With the bar lowered to 3 crops, it is simply the worst share again.
    assert selectors.label_noise_report(noisy_catalogue["qa"], min_crops=3).products[0].product == rice


def test_the_review_page_shows_the_interval_and_marks_small_samples(client, noisy_catalogue):
    import re

    client.force_login(noisy_catalogue["qa"])
    html = client.get("/review/").content.decode()
    rows = re.findall(r"<tr[^>]*>.*?</tr>", html.split("<tbody>")[1].split("</tbody>")[0], re.S)
    assert [re.search(r">([^<]+)</a>", row).group(1) for row in rows] == ["Oat milk", "Soy milk", "Rice milk"]
    assert "small sample" not in rows[0] and "small sample" in rows[2] and 'class="small-sample"' in rows[2]
    cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", rows[0], re.S)]
    assert cells[1:] == ["20", "4", "0.200", "0.08–0.42"]
    assert "95% interval" in html and "fewer than 10 crops" in html.lower()
