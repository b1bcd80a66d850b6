"""Roles in a real browser: a manager is offered no labelling, and a refused page is the app's page
with the reason."""
import pytest

from annotator.models import Frame
from tests.browser.test_frames import log_in
from tests.factories import FrameFactory, ShelfFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
TIMEOUT = 15_000


def test_a_manager_sees_no_labelling_and_a_refusal_gives_the_reason(page, live_server, screenshots):
    shelf = ShelfFactory()
    FrameFactory(shelf=shelf, status=Frame.Status.FAILED, status_reason="OSError: truncated")
    UserFactory(username="boss", company=shelf.camera.store.company, role="manager")

    log_in(page, live_server, "boss")
    page.wait_for_selector("table.frames", timeout=TIMEOUT)
    header = page.locator("header.topbar")
    assert header.locator("text=Reports").is_visible()
    assert header.locator("a[href='/label/']").count() == 0
    assert page.locator("text=Start labelling").count() == 0
    assert page.locator("button:has-text('Retry')").count() == 0

    response = page.goto(f"{live_server.url}/label/")
    assert response.status == 403
    assert page.locator("header.topbar .brand").inner_text() == "Shelf annotator"
    assert page.locator("header.topbar .who").inner_text() == "boss"
    assert "Labelling is for annotators and QA leads" in page.locator(".reason").inner_text()
    page.screenshot(path=str(screenshots / "refused.png"), full_page=True)
    page.click("text=Back to the frames")
    page.wait_for_selector("table.frames", timeout=TIMEOUT)
