"""The thin path in a real browser: log in, see the frames, open a pre-labelled frame."""
import pytest

from annotator.models import Frame, Label
from annotator.services.labels import Decision, record_labels
from annotator.services.prelabel import prelabel_frame
from tests.factories import BoxFactory, FrameFactory, ProductFactory, ShelfFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAYOUT = [((20, 30, 70, 110), 0), ((110, 30, 70, 110), 1), ((200, 30, 70, 110), 2)]


def log_in(page, live_server, username):
    page.goto(f"{live_server.url}/")
    assert "/accounts/login/" in page.url
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "correct-horse-battery")
    page.click("button[type=submit]")


def test_annotator_sees_a_prelabelled_frame(page, live_server, test_engines, screenshots):
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    products = [ProductFactory(company=company, name=name) for name in ("Oat milk", "Apple juice", "Yoghurt")]
    labelled = FrameFactory(shelf=shelf, blocks=LAYOUT, checksum="a" * 64, status=Frame.Status.LABELLED)
    record_labels(decisions=[
        Decision(box=BoxFactory(frame=labelled, x=x, y=y, w=w, h=h), product=products[c], action=Label.Action.IMPORTED)
        for (x, y, w, h), c in LAYOUT
    ])
    incoming = FrameFactory(shelf=shelf, blocks=LAYOUT, checksum="b" * 64)
    for (x, y, w, h), _ in LAYOUT:
        BoxFactory(frame=incoming, x=x, y=y, w=w, h=h)
    prelabel_frame(frame_id=incoming.pk)
    UserFactory(username="ann", company=company, role="annotator")

    log_in(page, live_server, "ann")
    page.wait_for_selector("table.frames")
    assert page.locator(f"a[href='/frames/{incoming.pk}/']").is_visible()
    page.click(f"a[href='/frames/{incoming.pk}/']")
    page.wait_for_selector(".frame img")
    assert page.locator(".frame img").evaluate("img => img.complete && img.naturalWidth") == 320
    assert page.locator(".overlay .box.suggested").count() == 3
    tags = page.locator(".frame .tag").all_inner_texts()
    assert tags == ["Oat milk", "Apple juice", "Yoghurt"]
    page.screenshot(path=str(screenshots / "frame-detail.png"), full_page=True)


def test_wrong_password_is_refused(page, live_server):
    UserFactory(username="ann2")
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "ann2")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert page.locator(".error").inner_text() == "Wrong username or password."


def test_the_pages_have_an_icon_and_nothing_they_load_is_missing(page, live_server):
    UserFactory(username="ann3")
    missing = []
    page.on("response", lambda response: missing.append(response.url) if response.status >= 400 else None)
    log_in(page, live_server, "ann3")
    page.wait_for_selector("table.frames")
    href = page.locator("link[rel=icon]").get_attribute("href")
    assert href.endswith("favicon.svg")
    status = page.evaluate("async href => (await fetch(href)).status", href)
    assert status == 200
    assert page.evaluate("async () => (await fetch('/favicon.ico')).status") == 200  # redirected to the SVG
    assert missing == []
