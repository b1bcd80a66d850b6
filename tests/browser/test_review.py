"""The QA review grid in a real browser: the planted crop comes first and is relabelled by keyboard."""
import numpy as np
import pytest

from annotator.models import BoxEmbedding, Label, ModelVersion
from tests.browser.test_frames import log_in
from tests.factories import (
    BoxFactory,
    FrameFactory,
    LabelFactory,
    PipelineVersionFactory,
    ProductFactory,
    ShelfFactory,
    UserFactory,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
TIMEOUT = 15_000


def test_a_qa_lead_finds_the_mislabelled_crop_and_relabels_it_by_keyboard(page, live_server, screenshots):
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    oat, soy = ProductFactory(company=company, name="Oat milk"), ProductFactory(company=company, name="Soy milk")
    embedder = ModelVersion.objects.create(kind=ModelVersion.Kind.EMBEDDER, name="tiny")
    PipelineVersionFactory(name="v2", embedder=embedder)
    rng = np.random.default_rng(0)
    centres = {oat.pk: rng.normal(size=8), soy.pk: rng.normal(size=8)}
    frame = FrameFactory(shelf=shelf, blocks=[((10 * i, 10, 10, 60), i % 2) for i in range(24)])
    planted = None
    for i in range(24):
        truth = (oat, soy)[i % 2]
        box = BoxFactory(frame=frame, x=10 * i, y=10, w=10, h=60)
        label = soy if i == 4 else truth  # one oat crop labelled soy
        planted = box if i == 4 else planted
        LabelFactory(box=box, product=label, action=Label.Action.CONFIRMED)
        vector = centres[truth.pk] + 0.2 * rng.normal(size=8)
        BoxEmbedding.objects.create(box=box, embedder=embedder, vector=vector.astype(np.float16).tobytes())
    UserFactory(username="qa", company=company, role="qa_lead")
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    log_in(page, live_server, "qa")
    page.click("text=Review")
    page.wait_for_selector("table.report", timeout=TIMEOUT)
    assert page.locator("table.report tbody tr").first.inner_text().startswith("Soy milk")
    page.click("text=Soy milk")
    page.wait_for_selector(".crop", timeout=TIMEOUT)
    first = page.locator(".crop").first
    assert first.get_attribute("data-box") == str(planted.pk)
    assert "looks like Oat milk" in first.inner_text()
    assert first.locator(".looks-like img").count() == 1  # the nearest Oat milk crop, beside it
    page.wait_for_function("[...document.querySelectorAll('.crop img')].slice(0, 4).every(i => i.complete && i.naturalWidth)",
                           timeout=TIMEOUT)
    page.keyboard.press(" ")
    assert page.locator("#selected-count").inner_text() == "1 selected"
    page.screenshot(path=str(screenshots / "review-grid.png"), full_page=True)
    page.keyboard.press("/")
    page.keyboard.type("Oat milk")
    page.wait_for_function("document.querySelectorAll('#relabel-options option').length > 0", timeout=TIMEOUT)
    with page.expect_navigation(timeout=TIMEOUT):
        page.keyboard.press("Enter")
    current = Label.objects.get(box=planted, is_current=True)
    assert current.product == oat and current.action == Label.Action.REVIEWED and current.annotator.username == "qa"
    assert errors == []
