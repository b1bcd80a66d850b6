"""The learning loop end to end on tiny companies: a round trains, gates, promotes, re-indexes and
switches; a losing candidate is not promoted; a crashed re-index resumes; rollback restores the
previous set; the search space never answers from a half-built collection; companies stay apart."""
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from annotator import engines
from annotator.models import Company, Frame, Label, LearningRound, ModelSet, ModelVersion, Prediction
from annotator.services import learning, model_sets, search_index, serving
from annotator.services.labels import Decision, record_labels
from annotator.services.prelabel import prelabel_frame
from tests.factories import BoxFactory, CompanyFactory, FrameFactory, ProductFactory, ShelfFactory

pytestmark = pytest.mark.django_db

TINY = {"backbone": "test_efficientnet", "embedding_dim": 32, "input_size": 64, "init": "none", "p": 3, "k": 4,
        "epochs": 1, "max_steps": 2, "realgram_trials": 2}
LAYOUTS = [
    [((10, 20, 60, 100), 0), ((90, 20, 60, 100), 1), ((170, 20, 60, 100), 2), ((250, 20, 60, 100), 0)],
    [((10, 20, 60, 100), 1), ((90, 20, 60, 100), 0), ((170, 20, 60, 100), 2), ((250, 20, 60, 100), 1)],
]
MONDAY = datetime(2024, 3, 4, 8, tzinfo=UTC)


@pytest.fixture(autouse=True)
def loop_settings(settings, tmp_path, test_engines):
    settings.VAR_DIR = tmp_path / "var"
    settings.QDRANT_URL = ""
    settings.QDRANT_EMBEDDED = "edge"
    settings.QDRANT_PATH = tmp_path / "qdrant"
    settings.LEARN_MIN_FRAMES = 4
    settings.LEARN_REINDEX_BATCH = 5
    settings.LEARN_TRAINING = TINY
    yield settings


def tiny_company(name: str, frames: int = 8) -> tuple[Company, dict]:
    shelf = ShelfFactory(camera__store__company=CompanyFactory(name=name))
    company = shelf.camera.store.company
    products = {colour: ProductFactory(company=company, name=f"{name} {colour}") for colour in range(3)}
    for index in range(frames):
        add_labelled_frame(shelf, products, index)
    return company, {"shelf": shelf, "products": products}


def add_labelled_frame(shelf, products, index: int) -> Frame:
    layout = LAYOUTS[index % 2]
    frame = FrameFactory(shelf=shelf, blocks=layout, status=Frame.Status.LABELLED,
                         captured_at=MONDAY + timedelta(hours=index))
    boxes = [BoxFactory(frame=frame, x=x, y=y, w=w, h=h) for (x, y, w, h), _ in layout]
    record_labels(decisions=[Decision(box=box, product=products[colour], action=Label.Action.IMPORTED)
                             for box, (_, colour) in zip(boxes, layout)])
    return frame


def labelled_count(company: Company) -> int:
    return search_index.labelled_boxes(company_id=company.pk).count()


def learn(company: Company, *options: str) -> str:
    out = StringIO()
    call_command("learn", "--company", company.name, "--budget-minutes", "1", *options, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def test_a_round_trains_gates_promotes_reindexes_and_switches_then_a_losing_one_does_not(monkeypatch):
    company, parts = tiny_company("north")
    search_index.deliver_outbox()
    waiting = FrameFactory(shelf=parts["shelf"], status=Frame.Status.READY)
    sent = []
    monkeypatch.setattr(learning, "send_task", lambda name, *args: sent.append((name, *args)))

    folder = Path(learn(company, "--margin", "-1"))  # any candidate wins: the gate's arithmetic is unit-tested

    learning_round = LearningRound.objects.get(company=company)
    assert learning_round.state == LearningRound.State.PROMOTED
    candidate = learning_round.candidate
    assert Path(candidate.folder) == folder
    for name in ("embedder.pt", "embedder.onnx", "realgram.json", "tracking.json", "calibrator.json",
                 "model_set.json", "MODEL_CARD.md"):
        assert (folder / name).is_file(), name
    gate = learning_round.report["gate"]
    assert gate["candidate"]["served"]["boxes"] > 0 and gate["promoted"]["name"] == "base"
    company.refresh_from_db()
    assert company.model_set == candidate and candidate.index_state == ModelSet.IndexState.READY
    assert sent == [("annotator.tasks.prelabel_frame", waiting.pk)]  # waiting work gets the new suggestions
    space = engines.model_set_engines(candidate.folder).search_space
    assert space.count(company_id=company.pk) == labelled_count(company) == candidate.indexed_boxes

    incoming = FrameFactory(shelf=parts["shelf"], blocks=LAYOUTS[0], captured_at=MONDAY + timedelta(days=1))
    for (x, y, w, h), _ in LAYOUTS[0]:
        BoxFactory(frame=incoming, x=x, y=y, w=w, h=h)
    prelabel_frame(frame_id=incoming.pk)
    prediction = Prediction.objects.filter(box__frame=incoming).select_related("pipeline_version").first()
    assert prediction.pipeline_version.model_set == candidate
    assert 0.0 <= prediction.probability <= 1.0

    # A new label reaches the promoted collection and the base one kept for a rollback.
    add_labelled_frame(parts["shelf"], parts["products"], 20)
    search_index.deliver_outbox()
    assert space.count(company_id=company.pk) == labelled_count(company)
    assert engines.search_space().count(company_id=company.pk) == labelled_count(company)

    learn(company, "--margin", "1")  # no candidate gains a whole point of accuracy
    second = LearningRound.objects.filter(company=company).first()
    assert second.state == LearningRound.State.REJECTED and second.report["promote"] is False
    assert second.message.startswith("not promoted")
    company.refresh_from_db()
    assert company.model_set == candidate

    out = StringIO()
    call_command("rollback_models", "--company", company.name, stdout=out)
    company.refresh_from_db()
    assert company.model_set is None and "base" in out.getvalue()
    candidate.refresh_from_db()
    assert candidate.rolled_back_at is not None


def test_a_crashed_reindex_resumes_and_a_half_built_collection_never_serves():
    company, parts = tiny_company("south")
    search_index.deliver_outbox()
    learn(company, "--margin", "1")
    candidate = LearningRound.objects.get(company=company).candidate
    assert candidate.index_state == ModelSet.IndexState.NONE

    search_index.build_index(model_set=candidate, batches=1)  # then the worker dies
    candidate.refresh_from_db()
    assert candidate.index_state == ModelSet.IndexState.BUILDING
    assert 0 < candidate.indexed_boxes < candidate.total_boxes
    with pytest.raises(model_sets.ModelSetStateError, match="not ready"):
        model_sets.switch(model_set=candidate)
    assert serving.serving(company_id=company.pk).model_set is None  # still the base collection

    # A label arriving mid-build reaches the collection being built too.
    add_labelled_frame(parts["shelf"], parts["products"], 30)
    search_index.deliver_outbox()

    learning.promote_by_id(model_set_id=candidate.pk)
    candidate.refresh_from_db()
    company.refresh_from_db()
    assert candidate.index_state == ModelSet.IndexState.READY and company.model_set == candidate
    space = engines.model_set_engines(candidate.folder).search_space
    assert space.count(company_id=company.pk) == labelled_count(company)


def test_one_companys_labels_never_reach_anothers_training_or_collection():
    north, _ = tiny_company("north")
    south, _ = tiny_company("south", frames=6)
    search_index.deliver_outbox()

    learn(north, "--margin", "-1")

    north_round = LearningRound.objects.get(company=north)
    assert north_round.report["training"]["samples"] + gate_boxes(north_round) == labelled_count(north)
    frames, _ = learning.company_frames(company=north, cache=Path("unused"))
    assert {f.frame_id for f in frames} == set(Frame.objects.filter(company=north).values_list("pk", flat=True))
    space = engines.model_set_engines(north_round.candidate.folder).search_space
    assert space.count(company_id=south.pk) == 0
    assert space.count() == labelled_count(north)
    south.refresh_from_db()
    assert south.model_set is None


def gate_boxes(learning_round: LearningRound) -> int:
    return learning_round.report["gate"]["candidate"]["served"]["boxes"]


def test_a_second_round_of_a_company_waits_for_the_running_one():
    company, _ = tiny_company("west", frames=4)
    LearningRound.objects.create(company=company, budget_minutes=1)
    with pytest.raises(learning.LearningError, match="still running"):
        learning.start_round(company=company, budget_minutes=1, cut_off=None, command="")
    LearningRound.objects.filter(company=company).update(heartbeat_at=datetime.now(UTC) - timedelta(hours=2))
    assert learning.start_round(company=company, budget_minutes=1, cut_off=None, command="").state == "running"
    assert LearningRound.objects.filter(company=company, state=LearningRound.State.FAILED).count() == 1


def test_the_models_page_shows_rounds_side_by_side_and_admins_roll_back(client):
    from tests.factories import UserFactory

    company, _ = tiny_company("east", frames=6)
    search_index.deliver_outbox()
    learn(company, "--margin", "-1")
    other, _ = tiny_company("elsewhere", frames=4)
    annotator = UserFactory(role="annotator", company=company)
    client.force_login(annotator)
    assert client.get("/models/").status_code == 403
    qa = UserFactory(role="qa_lead", company=company)
    client.force_login(qa)
    page = client.get("/models/").content.decode()
    candidate = LearningRound.objects.get(company=company).candidate
    assert candidate.name in page and "vs" in page and "elsewhere" not in page
    assert "Roll back" not in page
    status = client.get("/models/status/").json()
    assert [s["id"] for s in status["model_sets"]] == [candidate.pk] and status["model_sets"][0]["progress"] == 1.0
    assert client.post(f"/models/rollback/{company.pk}/").status_code == 403

    admin = UserFactory(role="admin", company=company)
    client.force_login(admin)
    assert "Roll back" in client.get("/models/").content.decode()
    assert client.post(f"/models/rollback/{other.pk}/").status_code == 404
    response = client.post(f"/models/rollback/{company.pk}/")
    assert response.status_code == 302
    company.refresh_from_db()
    assert company.model_set is None


def run_together(*calls):
    """Run the calls in threads released at the same moment; each result or raised error, in order."""
    import threading

    from django.db import connection

    start = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index, call):
        try:
            start.wait()
            results[index] = call()
        except Exception as error:  # the loser's error is part of the result
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.mark.django_db(transaction=True)
def test_two_rounds_of_a_company_started_at_once_make_one():
    company = CompanyFactory(name="race")
    results = run_together(*[lambda: learning.start_round(company=company, budget_minutes=1, cut_off=None, command="")] * 2)
    assert sorted(type(r).__name__ for r in results) == ["LearningError", "LearningRound"]
    assert LearningRound.objects.filter(company=company).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_switches_at_once_keep_the_chain_of_previous_sets():
    company, _ = tiny_company("racers", frames=6)
    search_index.deliver_outbox()
    learn(company, "--margin", "1")
    learn(company, "--margin", "1")
    first, second = ModelSet.objects.filter(company=company).order_by("pk")
    for model_set in (first, second):
        search_index.build_index(model_set=model_set)

    results = run_together(lambda: model_sets.switch(model_set=first), lambda: model_sets.switch(model_set=second))

    company.refresh_from_db()
    first.refresh_from_db()
    second.refresh_from_db()
    switched = [model_set for model_set, result in zip((first, second), results) if isinstance(result, Company)]
    assert company.model_set in switched
    if len(switched) == 2:  # one after the other: the later one replaced the earlier
        later = company.model_set
        assert later.previous == (first if later == second else second)
    else:  # the loser saw the row change under it
        assert isinstance(next(r for r in results if not isinstance(r, Company)), model_sets.ModelSetStateError)
        assert company.model_set.previous is None


@pytest.mark.django_db(transaction=True)
def test_two_builds_of_one_collection_at_once_index_every_crop_once():
    company, _ = tiny_company("builders", frames=6)
    search_index.deliver_outbox()
    learn(company, "--margin", "1")
    candidate = ModelSet.objects.get(company=company)
    engines.model_set_engines(candidate.folder)  # loaded once, before the threads share it

    results = run_together(lambda: search_index.build_index(model_set=ModelSet.objects.get(pk=candidate.pk)),
                           lambda: search_index.build_index(model_set=ModelSet.objects.get(pk=candidate.pk)))

    assert any(isinstance(r, ModelSet) for r in results), results
    for result in results:
        assert isinstance(result, ModelSet) or isinstance(result, model_sets.ModelSetStateError), result
    candidate.refresh_from_db()
    if candidate.index_state != ModelSet.IndexState.READY:  # the winner stopped when the loser moved on
        search_index.build_index(model_set=candidate)
        candidate.refresh_from_db()
    assert candidate.index_state == ModelSet.IndexState.READY
    assert candidate.indexed_boxes == labelled_count(company)
    assert engines.model_set_engines(candidate.folder).search_space.count() == labelled_count(company)


def test_learn_refuses_what_it_cannot_do_in_one_line(settings):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no company named 'nobody'"):
        call_command("learn", "--company", "nobody")
    company, _ = tiny_company("few", frames=2)
    with pytest.raises(CommandError, match="2 labelled frames; a round needs 4"):
        call_command("learn", "--company", company.name)
    settings.LEARN_TRAINING = {**TINY, "epochz": 3}
    with pytest.raises(CommandError, match="LEARN_CONFIG: .*'epochz'"):
        call_command("learn", "--company", company.name)
    with pytest.raises(CommandError, match="already on the base model set"):
        call_command("rollback_models", "--company", company.name)


def test_beat_queues_a_round_per_company_that_can_learn_and_resumes_dead_builds(monkeypatch):
    sent = []
    monkeypatch.setattr(learning, "send_task", lambda name, *args: sent.append((name, *args)))
    ready, _ = tiny_company("ready", frames=4)
    tiny_company("young", frames=2)
    assert learning.queue_rounds() == [ready.pk]
    assert sent == [("annotator.tasks.learn_company", ready.pk)]

    embedder = ModelVersion.objects.create(kind=ModelVersion.Kind.EMBEDDER, name="dead-build")
    dead = ModelSet.objects.create(company=ready, name="dead", folder="/x", embedder=embedder, version="v2",
                                   index_state=ModelSet.IndexState.BUILDING,
                                   index_heartbeat_at=datetime.now(UTC) - timedelta(hours=1))
    ModelSet.objects.create(company=ready, name="alive", folder="/y", embedder=embedder, version="v2",
                            index_state=ModelSet.IndexState.BUILDING, index_heartbeat_at=datetime.now(UTC))
    sent.clear()
    assert learning.resume_stalled_builds(older_than=timedelta(minutes=30)) == [dead.pk]
    assert sent == [("annotator.tasks.reindex_model_set", dead.pk)]
