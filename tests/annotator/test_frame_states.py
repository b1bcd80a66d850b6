"""One place decides a frame's state: the table of allowed changes, each change a conditional update,
only a ready frame leased and submitted, and pre-labelling never taking a labelled frame back."""
from __future__ import annotations

import itertools

import pytest
from django.db.models import Q

from annotator.models import Frame, Label, Prediction
from annotator.services import frame_states, prelabel, workspace
from annotator.services.frames import set_status
from tests.annotator.test_learning import run_together
from tests.annotator.test_workspace import annotator, ready_frame
from tests.factories import FrameFactory, ProductFactory, ShelfFactory

S = Frame.Status
# The specification, written out: every other change is refused.
ALLOWED = {
    (S.QUEUED, S.PROCESSING), (S.QUEUED, S.QUEUED),
    (S.PROCESSING, S.READY), (S.PROCESSING, S.FAILED), (S.PROCESSING, S.QUEUED), (S.PROCESSING, S.PROCESSING),
    (S.PROCESSING, S.SKIPPED), (S.SKIPPED, S.QUEUED),  # the quality gate skips it; a QA lead forces it through
    (S.FAILED, S.PROCESSING), (S.FAILED, S.QUEUED),
    (S.READY, S.LABELLED), (S.READY, S.READY),
    (S.LABELLED, S.LABELLED),
}


@pytest.mark.django_db
@pytest.mark.parametrize("source, target", list(itertools.product(S.values, repeat=2)))
def test_the_table_allows_the_changes_it_lists_and_refuses_every_other(source, target):
    frame = FrameFactory(status=source)
    if (source, target) in ALLOWED:
        assert frame_states.change(frame_id=frame.pk, to=target, expected=[source], status_reason="why")
        frame.refresh_from_db()
        assert (frame.status, frame.status_reason) == (target, "why")
    else:
        with pytest.raises(frame_states.ForbiddenTransition):
            frame_states.change(frame_id=frame.pk, to=target, expected=[source])
        assert Frame.objects.get(pk=frame.pk).status == source


@pytest.mark.django_db
def test_a_change_happens_only_from_the_state_and_condition_the_caller_expects():
    frame = FrameFactory(status=S.READY, prelabel_token="mine")
    assert not frame_states.change(frame_id=frame.pk, to=S.QUEUED, expected=[S.FAILED])
    assert not frame_states.change(frame_id=frame.pk, to=S.LABELLED, where=Q(prelabel_token="theirs"))
    assert Frame.objects.get(pk=frame.pk).status == S.READY
    # Without ``expected``: from whichever state may go there.
    assert frame_states.change(frame_id=frame.pk, to=S.LABELLED)
    assert not frame_states.change(frame_id=frame.pk, to=S.READY)
    assert Frame.objects.get(pk=frame.pk).status == S.LABELLED


@pytest.mark.django_db
def test_set_status_cannot_take_a_labelled_frame_back_to_ready():
    frame = FrameFactory(status=S.LABELLED)
    moved = set_status(frame=frame, status=S.READY)
    assert Frame.objects.get(pk=frame.pk).status == S.LABELLED and frame.status == S.LABELLED
    assert moved is False


@pytest.mark.django_db(transaction=True)
def test_two_changes_of_one_frame_at_once_make_one():
    frame = FrameFactory(status=S.READY)
    results = run_together(*[lambda: frame_states.change(frame_id=frame.pk, to=S.LABELLED, expected=[S.READY])] * 2)
    assert sorted(results) == [False, True]


@pytest.mark.django_db
@pytest.mark.parametrize("status", [S.QUEUED, S.PROCESSING, S.FAILED])
def test_only_a_ready_frame_can_be_leased_or_submitted(client, status):
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    products = [ProductFactory(company=company) for _ in range(3)]
    frame = ready_frame(shelf, products)
    Frame.objects.filter(pk=frame.pk).update(status=status)
    client.force_login(annotator(company))
    answers = {"boxes": [{"id": box.pk, "product_id": products[0].pk} for box in frame.boxes.all()]}

    leased = client.post(f"/api/frames/{frame.pk}/lease/")
    submitted = client.post(f"/api/frames/{frame.pk}/submit/", answers, content_type="application/json")

    assert leased.status_code == 409 and f"is {status}, not ready to label" in leased.json()["detail"]
    assert submitted.status_code == 409 and "your answers were not saved" in submitted.json()["detail"]
    assert client.post("/api/frames/next/").status_code == 204
    frame.refresh_from_db()
    assert frame.status == status and frame.leased_by is None and not Label.objects.exists()


@pytest.mark.django_db
def test_the_frame_page_offers_labelling_only_for_a_ready_frame(client):
    shelf = ShelfFactory()
    client.force_login(annotator(shelf.camera.store.company))
    offered = {status: "Label this frame" in client.get(f"/frames/{FrameFactory(shelf=shelf, status=status).pk}/")
               .content.decode() for status in S.values}
    assert offered == {status: status == S.READY for status in S.values}


@pytest.mark.django_db
def test_a_prelabelling_that_ends_after_a_submit_leaves_the_frame_labelled(test_engines, monkeypatch):
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    products = [ProductFactory(company=company) for _ in range(3)]
    frame = ready_frame(shelf, products)
    user = annotator(company)
    monkeypatch.setattr("annotator.services.workspace._deliver_outbox", lambda **company: None)
    answers = [workspace.BoxAnswer(box_id=box.pk, product_id=products[0].pk) for box in frame.boxes.all()]
    real = prelabel.open_image

    def submitted_meanwhile(data):
        workspace.submit_frame(frame_id=frame.pk, user=user, answers=answers)
        return real(data)

    monkeypatch.setattr(prelabel, "open_image", submitted_meanwhile)

    prelabel.prelabel_frame(frame_id=frame.pk)  # a new pipeline version, say

    frame.refresh_from_db()
    assert frame.status == S.LABELLED
    assert Label.objects.filter(box__frame=frame, is_current=True).count() == 3
    assert Prediction.objects.filter(box__frame=frame, pipeline_version__name="v0-test").count() == 3
    assert frame.prelabel_token == ""  # the run let go of it
