"""The search-space outbox with several deliverers at once (the worker's task, beat's sweep, every
pre-labelling, a rebuild): writes one company at a time, an older label never over a newer one,
each row settled once, a rebuild settling only what it read, a bounded retry, and the admin's
deletes reaching the search space."""
from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from annotator import tasks
from annotator.models import Label, SearchSpaceOutbox
from annotator.services import outbox, search_index
from annotator.services.labels import Decision, record_labels
from tests.annotator.test_learning import run_together
from tests.factories import BoxFactory, FrameFactory, ProductFactory, ShelfFactory, UserFactory

RED, GREEN = 0, 1
LAYOUT = [((10, 20, 60, 100), RED), ((90, 20, 60, 100), GREEN), ((170, 20, 60, 100), RED)]
WAIT = 30  # seconds a step may wait for another thread before the test fails instead of hanging


def labelled_shelf(checksum: str = "a" * 64) -> dict:
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    products = {RED: ProductFactory(company=company, name="Red"), GREEN: ProductFactory(company=company, name="Green")}
    frame = FrameFactory(shelf=shelf, blocks=LAYOUT, checksum=checksum)
    boxes = [BoxFactory(frame=frame, x=x, y=y, w=w, h=h) for (x, y, w, h), _ in LAYOUT]
    record_labels(decisions=[Decision(box=box, product=products[colour], action=Label.Action.IMPORTED)
                             for box, (_, colour) in zip(boxes, LAYOUT)])
    return {"company": company, "products": products, "boxes": boxes}


def indexed_product(search_space, box_id: int) -> int | None:
    points = search_space.client.retrieve(search_space.collection, [box_id], with_payload=True)
    return points[0].payload["product_id"] if points else None


def pending():
    return SearchSpaceOutbox.objects.filter(delivered_at__isnull=True)


@pytest.mark.django_db(transaction=True)
def test_the_company_lock_lets_one_holder_in_at_a_time():
    company = ShelfFactory().camera.store.company
    spans: list[tuple[float, float]] = []

    def hold() -> None:
        with search_index.company_lock(company_id=company.pk):
            entered = time.monotonic()
            time.sleep(0.3)
            spans.append((entered, time.monotonic()))

    assert run_together(hold, hold) == [None, None]
    (first_in, first_out), (second_in, _) = sorted(spans)
    assert second_in >= first_out  # the second waited for the first to leave


@pytest.mark.django_db(transaction=True)
def test_an_older_label_never_overwrites_a_newer_one(test_engines, search_space, monkeypatch):
    """A delivery embeds the box as labelled red and is slow to write; meanwhile the box is
    relabelled green and another delivery writes green. The slow one must not put red back."""
    scene = labelled_shelf()
    box, green = scene["boxes"][0], scene["products"][GREEN]
    embedded, go_on = threading.Event(), threading.Event()
    crop_points = search_index.crop_points

    def slow_for_the_older(**kwargs):
        points = crop_points(**kwargs)
        if threading.current_thread().name == "older":
            embedded.set()
            assert go_on.wait(WAIT)
        return points

    def deliver_older() -> None:
        try:
            search_index.deliver_outbox(company_id=scene["company"].pk)
        finally:
            connection.close()

    monkeypatch.setattr(search_index, "crop_points", slow_for_the_older)
    older = threading.Thread(target=deliver_older, name="older")
    older.start()
    try:
        assert embedded.wait(WAIT)
        record_labels(decisions=[Decision(box=box, product=green, action=Label.Action.CORRECTED)])
        search_index.deliver_outbox(company_id=scene["company"].pk)
        assert indexed_product(search_space, box.pk) == green.pk
    finally:
        go_on.set()
        older.join(WAIT)
    assert indexed_product(search_space, box.pk) == green.pk
    assert not pending().exists()


@pytest.mark.django_db(transaction=True)
def test_two_deliveries_at_once_settle_each_row_once(test_engines, search_space, monkeypatch):
    scene = labelled_shelf()
    both_read = threading.Barrier(2, timeout=WAIT)
    crop_points = search_index.crop_points

    def after_both_read(**kwargs):
        both_read.wait()  # each has read the same pending rows before either writes
        return crop_points(**kwargs)

    monkeypatch.setattr(search_index, "crop_points", after_both_read)
    results = run_together(*[lambda: search_index.deliver_outbox(company_id=scene["company"].pk)] * 2)
    assert sorted(results) == [0, len(LAYOUT)]
    assert list(SearchSpaceOutbox.objects.values_list("attempts", flat=True)) == [1] * len(LAYOUT)
    assert search_space.count(company_id=scene["company"].pk) == len(LAYOUT)


@pytest.mark.django_db
def test_a_rebuild_settles_only_the_rows_it_read(test_engines, search_space, monkeypatch):
    scene = labelled_shelf()
    box, green = scene["boxes"][0], scene["products"][GREEN]
    crop_points = search_index.crop_points

    def relabelled_meanwhile(**kwargs):
        points = crop_points(**kwargs)
        if not Label.objects.filter(box=box, product=green).exists():
            record_labels(decisions=[Decision(box=box, product=green, action=Label.Action.CORRECTED)])
        return points

    monkeypatch.setattr(search_index, "crop_points", relabelled_meanwhile)
    assert search_index.rebuild_search_space() == len(LAYOUT)
    # The relabel made while it ran is not the rebuild's: its row waits for a delivery.
    assert list(pending().values_list("box_key", "operation")) == [(box.pk, "upsert")]
    assert indexed_product(search_space, box.pk) != scene["products"][RED].pk  # the rebuild's red copy is not written
    monkeypatch.undo()
    assert search_index.deliver_outbox() == 1
    assert indexed_product(search_space, box.pk) == green.pk


@pytest.mark.django_db
def test_a_failing_company_does_not_hold_up_the_others(test_engines, search_space, monkeypatch):
    failing, healthy = labelled_shelf("b" * 64), labelled_shelf("c" * 64)
    crop_points = search_index.crop_points

    def broken_for_the_first(**kwargs):
        if set(kwargs["box_ids"]) & {box.pk for box in failing["boxes"]}:
            raise OSError("frame image unreadable")
        return crop_points(**kwargs)

    monkeypatch.setattr(search_index, "crop_points", broken_for_the_first)
    with pytest.raises(OSError, match="unreadable"):
        search_index.deliver_outbox()
    assert search_space.count(company_id=healthy["company"].pk) == len(LAYOUT)
    assert set(pending().values_list("company_id", flat=True)) == {failing["company"].pk}


@pytest.mark.django_db
def test_the_delivery_task_retries_a_few_times_with_backoff_then_stops(monkeypatch):
    calls, countdowns = [], []

    def qdrant_away(**kwargs):
        calls.append(kwargs)
        if len(calls) <= 10:
            raise ConnectionError("qdrant is down")
        return 0

    task_class = type(tasks.deliver_search_outbox._get_current_object())
    retry = task_class.retry

    def recorded_retry(self, *args, **kwargs):
        countdowns.append(kwargs.get("countdown"))
        return retry(self, *args, **kwargs)

    monkeypatch.setattr(search_index, "deliver_outbox", qdrant_away)
    monkeypatch.setattr(task_class, "retry", recorded_retry)
    result = tasks.deliver_search_outbox.apply()  # retries run at once when applied in-process
    assert result.failed() and isinstance(result.result, ConnectionError)
    assert len(calls) == 4  # the first and three retries; beat's sweep delivers later
    assert countdowns[:3] == [10, 20, 40]


@pytest.mark.django_db
def test_a_delivery_is_sent_by_name_and_not_again_while_deliveries_fail(monkeypatch):
    from backend.celery import app

    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, args, kwargs: sent.append((name, args, kwargs)))
    scene = labelled_shelf()
    outbox.queue_delivery()
    assert sent == [("annotator.tasks.deliver_search_outbox", [], None)]

    pending().filter(box_key=scene["boxes"][0].pk).update(attempts=1, last_error="ConnectionError: qdrant is down")
    outbox.queue_delivery()  # a submit during an outage: the retrying task or the sweep delivers
    outbox.queue_delivery(company_id=scene["company"].pk)
    assert len(sent) == 1
    other = ShelfFactory().camera.store.company  # a company whose deliveries do not fail
    outbox.queue_delivery(company_id=other.pk)
    assert sent[1:] == [("annotator.tasks.deliver_search_outbox", [], {"company_id": other.pk})]


@pytest.mark.django_db
def test_deleting_boxes_and_labels_in_the_admin_takes_their_points_out(client, test_engines, search_space):
    scene = labelled_shelf()
    first, second, third = scene["boxes"]
    search_index.deliver_outbox()
    assert search_space.count() == len(LAYOUT)
    client.force_login(UserFactory(username="operator", is_staff=True, is_superuser=True))

    response = client.post(f"/admin/annotator/box/{first.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    current = Label.objects.get(box=second, is_current=True)
    response = client.post("/admin/annotator/label/", {"action": "delete_selected", "_selected_action": [current.pk],
                                                       "post": "yes"})
    assert response.status_code == 302

    assert sorted(pending().values_list("box_key", "operation")) == sorted(
        [(first.pk, "delete"), (second.pk, "delete")])
    assert search_index.deliver_outbox() == 2
    assert indexed_product(search_space, first.pk) is None and indexed_product(search_space, second.pk) is None
    assert indexed_product(search_space, third.pk) == scene["products"][RED].pk


@pytest.mark.django_db
def test_deleting_a_frame_in_the_admin_takes_its_boxes_points_out(client, test_engines, search_space):
    scene = labelled_shelf()
    search_index.deliver_outbox()
    client.force_login(UserFactory(username="operator", is_staff=True, is_superuser=True))
    frame = scene["boxes"][0].frame
    assert client.post(f"/admin/annotator/frame/{frame.pk}/delete/", {"post": "yes"}).status_code == 302
    search_index.deliver_outbox()
    assert search_space.count() == 0
