"""The Models page in a real browser: a running round's progress follows the stored progress without a
reload, and the page shows the round's figures once it has ended."""
import pytest

from annotator.models import LearningRound, ModelSet, ModelVersion
from tests.browser.test_frames import log_in
from tests.factories import CompanyFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
TIMEOUT = 15_000
FIGURES = {"accuracy": 0.963, "accuracy_without_majority": 0.892, "macro_accuracy": 0.84,
           "first_frames_accuracy": 0.972, "flicker_rate": 0.037, "boxes": 4429}
BASE = {"accuracy": 0.913, "accuracy_without_majority": 0.712, "macro_accuracy": 0.616,
        "first_frames_accuracy": 0.718, "flicker_rate": 0.068, "boxes": 4429}


def test_an_admin_follows_a_round_and_its_collection_build(page, live_server, screenshots):
    company = CompanyFactory(name="Acme")
    admin = UserFactory(role="admin", company=company)
    embedder = ModelVersion.objects.create(kind=ModelVersion.Kind.EMBEDDER, name="round-1-abc")
    model_set = ModelSet.objects.create(company=company, name="round-1", folder="/nowhere", embedder=embedder,
                                        version="v2", index_state=ModelSet.IndexState.BUILDING, total_boxes=200,
                                        indexed_boxes=50)
    learning_round = LearningRound.objects.create(
        company=company, budget_minutes=25, state=LearningRound.State.INDEXING, stage="re-indexing", progress=0.9,
        candidate=model_set, message="promoted: accuracy 0.9625 vs 0.9133 (margin 0.005)",
        report={"gate": {"candidate": {"served": FIGURES}, "promoted": {"name": "base", "served": BASE}}})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, live_server, admin.username)
    page.click("text=Models")
    page.wait_for_selector(f"tr[data-round='{learning_round.pk}']", timeout=TIMEOUT)
    row = page.locator(f"tr[data-round='{learning_round.pk}']")
    assert "0.963" in row.inner_text() and "vs 0.913" in row.inner_text()
    build = page.locator(f"tr[data-model-set='{model_set.pk}'] progress")
    assert float(build.get_attribute("value")) == pytest.approx(0.25)

    ModelSet.objects.filter(pk=model_set.pk).update(indexed_boxes=150)
    page.wait_for_function(f"document.querySelector(\"tr[data-model-set='{model_set.pk}'] progress\").value > 0.7",
                           timeout=TIMEOUT)
    assert "150 / 200" in page.locator(f"tr[data-model-set='{model_set.pk}']").inner_text()

    ModelSet.objects.filter(pk=model_set.pk).update(index_state=ModelSet.IndexState.READY, indexed_boxes=200)
    LearningRound.objects.filter(pk=learning_round.pk).update(state=LearningRound.State.PROMOTED, progress=1.0,
                                                             stage="done")
    page.wait_for_selector(f"tr[data-round='{learning_round.pk}'] td[data-field=state]:has-text('promoted')", timeout=TIMEOUT)
    page.screenshot(path=str(screenshots / "models.png"), full_page=True)
    assert errors == []
