"""Confirm-rate reports: the figures equal a direct count of the Label rows, for every grouping;
only report readers see them; only their companies' labels count."""
import csv
import io
from collections import defaultdict
from datetime import date, timedelta

import numpy as np
import pytest

from annotator import selectors
from annotator.models import BoxEmbedding, Label, ModelVersion
from annotator.selectors import REPORT_GROUPS, WORKSPACE_ACTIONS
from tests.factories import (
    BoxFactory,
    CompanyFactory,
    FrameFactory,
    LabelFactory,
    PipelineVersionFactory,
    ProductFactory,
    ShelfFactory,
    UserFactory,
)
from tests.report_data import decision_history

pytestmark = pytest.mark.django_db


@pytest.fixture
def history():
    return decision_history()


def group_of(label: Label, by: str) -> str:
    camera = label.box.frame.camera
    value = {
        "day": label.created_at.date(),
        "week": (label.created_at - timedelta(days=label.created_at.weekday())).date(),
        "pipeline": label.suggested_by and label.suggested_by.name,
        "store": camera.store.code,
        "camera": camera.code,
        "category": label.suggested_product and label.suggested_product.category.name,
        "product": label.suggested_product and label.suggested_product.name,
        "annotator": label.annotator.username,
    }[by]
    return "" if value is None else str(value)


def counted_directly(company, by, start=None, end=None) -> dict[str, dict]:
    """The report, computed the slow way: every Label row of the company, one at a time."""
    totals = defaultdict(lambda: defaultdict(float))
    decided = set()  # a box's later decisions (a QA lead's) are not the annotator's
    for label in Label.objects.filter(box__frame__company=company).order_by("pk").select_related(
            "box__frame__camera__store", "suggested_by", "suggested_product__category", "annotator"):
        if label.action not in WORKSPACE_ACTIONS or label.annotator is None or label.box_id in decided:
            continue
        decided.add(label.box_id)
        day = label.created_at.date()
        if (start and day < start) or (end and day > end):
            continue
        row = totals[group_of(label, by)]
        row[label.action] += 1
        current = Label.objects.get(box=label.box, is_current=True)
        row["changed_later"] += label.action == Label.Action.CONFIRMED and current.product_id != label.product_id
        row["seconds"] += label.time_spent_ms / 1000
    return {
        group: {"confirmed": int(row["confirmed"]), "corrected": int(row["corrected"]), "added": int(row["added"]),
                "deleted": int(row["deleted"]), "changed_later": int(row["changed_later"]),
                "confirm_rate": row["confirmed"] / (row["confirmed"] + row["corrected"])
                if row["confirmed"] + row["corrected"] else None,
                "seconds_per_box": row["seconds"] / sum(row[a] for a in WORKSPACE_ACTIONS)}
        for group, row in totals.items()
    }


def as_reported(rows) -> dict[str, dict]:
    return {row.group: {"confirmed": row.confirmed, "corrected": row.corrected, "added": row.added,
                        "deleted": row.deleted, "changed_later": row.changed_later,
                        "confirm_rate": row.confirm_rate, "seconds_per_box": row.seconds_per_box}
            for row in rows}


@pytest.mark.parametrize("by", list(REPORT_GROUPS))
def test_report_figures_equal_a_direct_count_of_the_labels(history, by):
    reported = as_reported(selectors.confirm_rate_by(history["manager"], by=by))
    expected = counted_directly(history["company"], by)
    assert reported.keys() == expected.keys()
    for group, figures in expected.items():
        assert reported[group] == pytest.approx(figures), (by, group)
    assert sum(r["confirmed"] + r["corrected"] + r["added"] + r["deleted"] for r in reported.values()) == 60


def test_a_date_range_keeps_the_days_inside_it(history):
    start, end = date(2024, 3, 6), date(2024, 3, 9)
    reported = as_reported(selectors.confirm_rate_by(history["manager"], by="annotator", start=start, end=end))
    expected = counted_directly(history["company"], "annotator", start, end)
    assert reported.keys() == expected.keys()
    for group, figures in expected.items():
        assert reported[group] == pytest.approx(figures)
    everything = as_reported(selectors.confirm_rate_by(history["manager"], by="annotator"))
    assert sum(r["confirmed"] for r in reported.values()) < sum(r["confirmed"] for r in everything.values())
    days = {row.group for row in selectors.confirm_rate_by(history["manager"], by="day", start=start, end=end)}
    assert days and all(start.isoformat() <= day <= end.isoformat() for day in days)


def test_the_api_serves_managers_and_qa_leads_json_and_csv(client, history):
    client.force_login(history["manager"])
    response = client.get("/api/reports/confirm-rate/?by=pipeline")
    assert response.status_code == 200
    by_pipeline = {row["group"]: row for row in response.json()}
    assert set(by_pipeline) == {"", "v1", "v2"}  # "": added boxes, which had no suggestion
    expected = counted_directly(history["company"], "pipeline")
    assert by_pipeline["v1"]["confirm_rate"] == pytest.approx(expected["v1"]["confirm_rate"])
    assert by_pipeline[""]["suggested"] == 0 and by_pipeline[""]["confirm_rate"] is None

    exported = client.get("/api/reports/confirm-rate/?by=store&format=csv")
    assert exported["Content-Type"].startswith("text/csv")
    assert "confirm-rate-by-store.csv" in exported["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
    assert {row["group"] for row in rows} == set(counted_directly(history["company"], "store"))
    assert sum(int(row["boxes"]) for row in rows) == 60

    client.force_login(history["qa"])
    assert client.get("/api/reports/confirm-rate/").status_code == 200


def test_annotators_do_not_see_reports(client, history):
    client.force_login(history["annotator"])
    response = client.get("/api/reports/confirm-rate/")
    assert response.status_code == 403
    assert "managers and QA leads" in response.json()["detail"]


def test_another_companys_manager_sees_none_of_it(client, history):
    client.force_login(UserFactory(company=CompanyFactory(), role="manager"))
    assert client.get("/api/reports/confirm-rate/?by=annotator").json() == []


@pytest.mark.parametrize("query, message", [
    ("by=colour", "is not a valid choice"),
    ("start=yesterday", "Date has wrong format"),
    ("start=2024-03-09&end=2024-03-01", "is after end"),
])
def test_bad_report_queries_are_400_with_a_message(client, history, query, message):
    client.force_login(history["manager"])
    response = client.get(f"/api/reports/confirm-rate/?{query}")
    assert response.status_code == 400
    assert message in str(response.json())


def test_the_dashboard_shows_the_figures_sorted_with_a_chart(client, history):
    client.force_login(history["manager"])
    page = client.get("/reports/?by=annotator&sort=-confirm_rate")
    assert page.status_code == 200
    body = page.content.decode()
    expected = counted_directly(history["company"], "annotator")
    order = sorted(expected, key=lambda g: expected[g]["confirm_rate"], reverse=True)
    assert body.index(f"<td>{order[0]}</td>") < body.index(f"<td>{order[1]}</td>")
    assert f"{expected[order[0]]['confirm_rate']:.3f}" in body
    assert 'href="/reports/"' in body or "Reports</a>" in body  # the nav offers it to managers
    chart = client.get("/reports/confirm-rate.svg?by=pipeline&over=day")
    assert chart["Content-Type"] == "image/svg+xml" and chart.content.lstrip().startswith(b"<?xml")
    assert b"v1" in chart.content and b"v2" in chart.content  # one line (and legend entry) per version


def test_annotators_get_no_dashboard_and_no_link_to_it(client, history):
    client.force_login(history["annotator"])
    assert client.get("/reports/").status_code == 403
    assert client.get("/reports/confirm-rate.svg").status_code == 403
    assert "Reports</a>" not in client.get("/").content.decode()


def test_a_reversed_date_range_is_explained_on_the_page(client, history):
    client.force_login(history["manager"])
    page = client.get("/reports/?start=2024-03-09&end=2024-03-01")
    assert page.status_code == 200 and "is after the end" in page.content.decode()
    assert client.get("/reports/confirm-rate.svg?start=2024-03-09&end=2024-03-01").status_code == 400


def test_suspicious_products_come_from_the_stored_embeddings_company_by_company(client):
    embedder = ModelVersion.objects.create(kind=ModelVersion.Kind.EMBEDDER, name="tiny")
    PipelineVersionFactory(name="v2", embedder=embedder)
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(3, 8))

    def labelled_crops(company, planted: int):
        shelf = ShelfFactory(camera__store__company=company)
        products = [ProductFactory(company=company, name=f"{company.name}-{i}") for i in range(3)]
        frame = FrameFactory(shelf=shelf, checksum=f"{company.pk:064d}")
        for i in range(60):
            truth = i % 3
            label = 2 if i < planted * 3 and truth == 0 else truth  # some crops of product 0 called product 2
            box = BoxFactory(frame=frame, x=i, y=0)
            LabelFactory(box=box, product=products[label], action=Label.Action.IMPORTED)
            vector = centres[truth] + 0.3 * rng.normal(size=8)
            BoxEmbedding.objects.create(box=box, embedder=embedder, vector=vector.astype(np.float16).tobytes())
        return products

    company = CompanyFactory()
    products = labelled_crops(company, planted=4)
    labelled_crops(CompanyFactory(), planted=0)  # another company's crops never mix in
    LabelFactory(box=BoxFactory(frame=FrameFactory(shelf=ShelfFactory(camera__store__company=company))),
                 product=products[1], action=Label.Action.IMPORTED)  # no embedding: left out, counted

    client.force_login(UserFactory(company=company, role="qa_lead"))
    report = client.get("/api/reports/suspicious-products/").json()
    assert [row["product"]["id"] for row in report["products"]][0] == products[2].pk
    assert report["products"][0]["suspicious"] >= 3 and report["unscored"] == 1
    assert {row["product"]["id"] for row in report["products"]} == {p.pk for p in products}  # theirs only
    assert {(pair["a"]["id"], pair["b"]["id"]) for pair in report["pairs"]} <= {
        (a.pk, b.pk) for a in products for b in products if a.pk < b.pk}

    client.force_login(UserFactory(company=company, role="annotator"))
    assert client.get("/api/reports/suspicious-products/").status_code == 403


def test_auto_accepted_confirms_are_counted_apart_with_their_qa_reviews():
    company = CompanyFactory()
    manager = UserFactory(company=company, role="manager")
    annotator, qa = UserFactory(company=company, role="annotator"), UserFactory(company=company, role="qa_lead")
    frame = FrameFactory(shelf=ShelfFactory(camera__store__company=company))
    product = ProductFactory(company=company)
    boxes = [BoxFactory(frame=frame) for _ in range(4)]
    for box, auto in zip(boxes, (True, True, True, False)):
        LabelFactory(box=box, product=product, action=Label.Action.CONFIRMED, annotator=annotator,
                     auto_accepted=auto)
    Label.objects.filter(box=boxes[0]).update(is_current=False)
    LabelFactory(box=boxes[0], product=product, action=Label.Action.REVIEWED, annotator=qa)
    [row] = selectors.confirm_rate_by(manager, by="annotator")
    assert (row.confirmed, row.auto_accepted, row.reviewed, row.boxes) == (1, 3, 1, 1)
    assert row.as_dict()["auto_accepted"] == 3 and row.as_dict()["reviewed"] == 1
