"""The learning loop end to end on tiny companies: a round trains, gates, promotes, re-indexes and
switches; a losing candidate is not promoted; a crashed re-index resumes; rollback restores the
previous set; the search space never answers from a half-built collection; companies stay apart."""
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from annotator import engines
from annotator.models import Company, Frame, Label, LearningRound, ModelSet, Prediction
from annotator.services import learning, model_sets, search_index
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
    return model_sets.labelled_boxes(company_id=company.pk).count()


def learn(company: Company, *options: str) -> str:
    out = StringIO()
    call_command("learn", "--company", company.name, "--budget-minutes", "1", *options, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def test_a_round_trains_gates_promotes_reindexes_and_switches_then_a_losing_one_does_not():
    company, parts = tiny_company("north")
    search_index.deliver_outbox()

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

    model_sets.build_index(model_set=candidate, batches=1)  # then the worker dies
    candidate.refresh_from_db()
    assert candidate.index_state == ModelSet.IndexState.BUILDING
    assert 0 < candidate.indexed_boxes < candidate.total_boxes
    with pytest.raises(model_sets.ModelSetStateError, match="not ready"):
        model_sets.switch(model_set=candidate)
    assert model_sets.serving(company_id=company.pk).model_set is None  # still the base collection

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
