"""The labelling workspace in a real browser: a frame labelled by keyboard alone, what it teaches the
next frame of the shelf, a frame held by another annotator, and errors on submit."""
from datetime import UTC, datetime, timedelta

import pytest
from django.core.files.base import ContentFile

from annotator.models import Box, Frame, Label, PipelineVersion, Prediction, ProductImage
from annotator.services import search_index
from annotator.services.labels import Decision, record_labels
from annotator.services.prelabel import prelabel_frame
from annotator.services.workspace import schedule_frame
from tests.factories import (
    BoxFactory,
    CategoryFactory,
    FrameFactory,
    ProductFactory,
    ShelfFactory,
    UserFactory,
    shelf_image,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTH, HEIGHT = 480, 320
# Two shelf rows of four slots; x, y, w, h in pixels.
SLOTS = [(20 + 115 * i, 20, 95, 130) for i in range(4)] + [(20 + 115 * i, 170, 95, 130) for i in range(4)]
MONDAY = datetime(2024, 3, 4, 10, tzinfo=UTC)
TIMEOUT = 20_000  # ms: two shared CPU cores, be patient


def log_in(page, live_server, username):
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_selector("table.frames")


def with_thumbnail(product, colour):
    ProductImage.objects.create(
        product=product, is_primary=True, checksum=f"{product.pk:064d}",
        image=ContentFile(shelf_image((60, 90), [((0, 0, 60, 90), colour)], fmt="PNG"), name="thumb.png"))
    return product


def shelf_frame(shelf, colours, *, days, boxed, **fields):
    """A frame of the shelf with a product of the given colour in each slot (None: empty slot) and a
    detector box on the slots listed in ``boxed``."""
    frame = FrameFactory(shelf=shelf, width=WIDTH, height=HEIGHT, captured_at=MONDAY + timedelta(days=days),
                         blocks=[(slot, c) for slot, c in zip(SLOTS, colours) if c is not None], **fields)
    boxes = [BoxFactory(frame=frame, x=x, y=y, w=w, h=h) for i, (x, y, w, h) in enumerate(SLOTS) if i in boxed]
    return frame, boxes


def keys(page, *sequence):
    for key in sequence:
        page.keyboard.press(key)


def selected_number(page):
    return page.locator(".ws-box-number").inner_text()


def test_a_frame_is_labelled_by_keyboard_and_teaches_the_next_frame(page, live_server, test_engines, screenshots):
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    dairy, drinks, dry = (CategoryFactory(company=company, name=n) for n in ("Dairy", "Drinks", "Dry food"))
    catalogue = [("Oat milk", dairy), ("Apple juice", drinks), ("Greek yoghurt", dairy), ("Cola zero", drinks),
                 ("Basmati rice", dry), ("Espresso beans", dry), ("Sparkling water", drinks)]
    known = [with_thumbnail(ProductFactory(company=company, name=name, category=category), colour)
             for colour, (name, category) in enumerate(catalogue)]
    cornflakes = with_thumbnail(ProductFactory(company=company, name="Cornflakes", category=dry), 8)
    green_tea = with_thumbnail(ProductFactory(company=company, name="Green tea", category=drinks), 9)
    ProductFactory(company=company, name="Corn chips", category=dry)
    ProductFactory(company=company, name="Iced tea", category=drinks)

    # Last week's frame, labelled: the search space knows products 0-6 in slots 0-6.
    history, history_boxes = shelf_frame(shelf, [0, 1, 2, 3, 4, 5, 6, None], days=-8, boxed=range(7),
                                         status=Frame.Status.LABELLED)
    record_labels(decisions=[Decision(box=box, product=known[i], action=Label.Action.IMPORTED)
                             for i, box in enumerate(history_boxes)])
    # This week: slots 3 and 4 hold products never seen (colours 7, 8), slot 5's box is a false
    # detection we delete, and slot 7 holds a product the detector missed (colour 9).
    colours = [0, 1, 2, 7, 8, 5, 6, 9]
    frame, boxes = shelf_frame(shelf, colours, days=-4, boxed=range(7))
    prelabel_frame(frame_id=frame.pk)
    # Next week's frame is waiting for its pre-labelling (done after the submit, below).
    upcoming, upcoming_boxes = shelf_frame(shelf, colours, days=0, boxed=range(8))
    predictions = {p.box_id: p for p in Prediction.objects.filter(box__frame=frame)}
    suggested = [predictions[box.pk].product_id for box in boxes]
    assert suggested[:3] == [known[0].pk, known[1].pk, known[2].pk]
    second_candidate = predictions[boxes[3].pk].candidates[1]["product_id"]
    user = UserFactory(username="ann", company=company, role="annotator")

    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    log_in(page, live_server, "ann")
    page.goto(f"{live_server.url}/label/")
    page.wait_for_url(f"**/frames/{frame.pk}/label/", timeout=TIMEOUT)
    page.wait_for_selector(".ws-tag", timeout=TIMEOUT)
    assert page.locator(".ws-tag").count() == 7
    assert page.locator(".ws-candidate").count() >= 5
    assert selected_number(page) == "#1"
    assert "Oat milk" in page.locator(".ws-answer").inner_text()

    # A wrong pick, undone.
    keys(page, "3")
    assert selected_number(page) == "#2"
    keys(page, "u")
    assert selected_number(page) == "#1" and page.locator(".ws-badge").inner_text() == "to do"
    # Three suggestions confirmed: Enter, Space, Enter.
    keys(page, "Enter", "Space", "Enter")
    assert selected_number(page) == "#4"
    # Box 4: the second candidate.
    keys(page, "2")
    assert selected_number(page) == "#5"
    # Box 5: through the catalogue search.
    keys(page, "/")
    page.keyboard.type("cornfl")
    page.wait_for_selector(".ws-results li.active:has-text('Cornflakes')", timeout=TIMEOUT)
    keys(page, "Enter")
    assert selected_number(page) == "#6"
    # Box 6: a false box.
    keys(page, "x")
    assert selected_number(page) == "#7"
    # Submitting with an untouched box is refused, naming it.
    keys(page, "s")
    message = page.locator(".ws-message")
    assert "still to do: #7" in message.inner_text()
    # A new box on the product the detector missed: n, a drag, then its product by search.
    keys(page, "n")
    stage = page.locator(".ws-stage").bounding_box()
    scale = stage["width"] / WIDTH
    x, y, w, h = SLOTS[7]
    page.mouse.move(stage["x"] + (x + 2) * scale, stage["y"] + (y + 2) * scale)
    page.mouse.down()
    page.mouse.move(stage["x"] + (x + w / 2) * scale, stage["y"] + (y + h / 2) * scale, steps=4)
    page.mouse.move(stage["x"] + (x + w - 2) * scale, stage["y"] + (y + h - 2) * scale, steps=4)
    page.mouse.up()
    assert page.evaluate("document.activeElement.type") == "search"
    assert selected_number(page) == "#8"
    page.keyboard.type("green t")
    page.wait_for_selector(".ws-results li.active:has-text('Green tea')", timeout=TIMEOUT)
    keys(page, "Enter")
    assert selected_number(page) == "#7"
    assert page.locator(".ws-tag").count() == 8
    page.wait_for_timeout(300)  # let the image settle for the picture
    page.screenshot(path=str(screenshots / "workspace.png"))
    keys(page, "?")
    assert page.locator(".ws-help").is_visible()
    page.screenshot(path=str(screenshots / "workspace-help.png"))
    keys(page, "Escape")
    assert page.locator(".ws-help").is_hidden()
    # The last suggestion, by "confirm remaining"; then submit.
    keys(page, "Shift+Enter", "Control+Enter")
    page.wait_for_selector("text=Nothing to label right now", timeout=TIMEOUT)
    page.screenshot(path=str(screenshots / "workspace-done.png"))
    assert f"Frame #{frame.pk} submitted: 4 confirmed, 2 corrected, 1 added, 1 deleted." in message.inner_text()

    frame.refresh_from_db()
    assert frame.status == Frame.Status.LABELLED and frame.leased_by is None
    labels = {label.box_id: label for label in Label.objects.filter(box__frame=frame, is_current=True)}
    added = Box.objects.get(frame=frame, source=Box.Source.MANUAL)
    expected = {
        boxes[0].pk: ("confirmed", known[0].pk), boxes[1].pk: ("confirmed", known[1].pk),
        boxes[2].pk: ("confirmed", known[2].pk), boxes[3].pk: ("corrected", second_candidate),
        boxes[4].pk: ("corrected", cornflakes.pk), boxes[5].pk: ("deleted", None),
        boxes[6].pk: ("confirmed", suggested[6]), added.pk: ("added", green_tea.pk),
    }
    assert {box_id: (label.action, label.product_id) for box_id, label in labels.items()} == expected
    assert all(label.annotator == user and label.time_spent_ms > 0 for label in labels.values())
    assert labels[boxes[3].pk].suggested_product_id == suggested[3] != second_candidate
    assert abs(added.x - x) <= 3 and abs(added.y - y) <= 3 and abs(added.w - w) <= 5 and abs(added.h - h) <= 5

    # The answers reach the search space ...
    search_index.deliver_outbox()
    space = test_engines.search_space
    points, _ = space.client.scroll(space.collection, limit=100, with_payload=True)
    payloads = {int(p.id): p.payload["product_id"] for p in points}
    assert {box_id: payloads.get(box_id) for box_id in expected} == {
        box_id: product for box_id, (_, product) in expected.items()}
    assert payloads[history_boxes[0].pk] == known[0].pk
    # ... and the shelf's next frame is suggested what was taught.
    prelabel_frame(frame_id=upcoming.pk)
    upcoming_suggestions = {p.box_id: p.product_id for p in Prediction.objects.filter(box__frame=upcoming)}
    assert upcoming_suggestions[upcoming_boxes[3].pk] == second_candidate
    assert upcoming_suggestions[upcoming_boxes[4].pk] == cornflakes.pk
    assert upcoming_suggestions[upcoming_boxes[7].pk] == green_tea.pk
    assert upcoming_suggestions[upcoming_boxes[0].pk] == known[0].pk

    # The workspace takes it: "Check again" has the focus.
    keys(page, "Enter")
    page.wait_for_url(f"**/frames/{upcoming.pk}/label/", timeout=TIMEOUT)
    page.wait_for_function("document.querySelectorAll('.ws-tag').length === 8", timeout=TIMEOUT)
    tags = page.locator(".ws-tag span").all_inner_texts()
    assert "Cornflakes" in tags and "Green tea" in tags
    assert errors == []


def ready_frame(shelf, products, *, days=0):
    """A pre-labelled, scheduled frame of three boxes, from Prediction rows."""
    frame = FrameFactory(shelf=shelf, status=Frame.Status.READY, captured_at=MONDAY + timedelta(days=days),
                         blocks=[((20 + 100 * i, 25, 80, 110), i) for i in range(3)])
    version, _ = PipelineVersion.objects.get_or_create(name="v1")
    for i in range(3):
        box = BoxFactory(frame=frame, x=20 + 100 * i, y=25, w=80, h=110)
        order = [i, *[j for j in range(len(products)) if j != i]]
        candidates = [{"product_id": products[j].pk, "score": 0.92 - 0.2 * k,
                       "components": {"knn": 0.92 - 0.2 * k, "knn_mean": 0.85 - 0.2 * k, "knn_count": 3.0,
                                      "realgram": 0.1, "realgram_recency": 0.8, "realgram_overlap": 0.6,
                                      "realgram_count": 4.0,
                                      **({"tracking": 0.14, "tracking_similarity": 0.97, "tracking_confirmed": 1.0}
                                         if k == 0 else {})}}
                      for k, j in enumerate(order)]
        Prediction.objects.create(box=box, pipeline_version=version, product=products[i], score=0.92,
                                  candidates=candidates)
    schedule_frame(frame=frame)
    return frame


@pytest.fixture
def scene():
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    products = [ProductFactory(company=company, name=name) for name in ("Apple juice", "Orange juice", "Oat milk")]
    return {"shelf": shelf, "company": company, "products": products, "frame": ready_frame(shelf, products)}


def test_a_frame_held_by_another_annotator_is_refused(browser, page, live_server, scene, screenshots):
    frame = scene["frame"]
    UserFactory(username="first", company=scene["company"], role="annotator")
    UserFactory(username="second", company=scene["company"], role="annotator")
    log_in(page, live_server, "first")
    page.goto(f"{live_server.url}/frames/{frame.pk}/label/")
    page.wait_for_selector(".ws-tag", timeout=TIMEOUT)
    frame.refresh_from_db()
    assert frame.leased_by.username == "first"

    other = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        intruder = other.new_page()
        log_in(intruder, live_server, "second")
        intruder.goto(f"{live_server.url}/frames/{frame.pk}/label/")
        message = intruder.locator(".ws-message.locked")
        message.wait_for(timeout=TIMEOUT)
        assert f"first is labelling frame {frame.pk}" in message.inner_text()
        assert "not edit" in message.inner_text()
        intruder.wait_for_selector(".ws-tag", timeout=TIMEOUT)  # shown, read-only
        assert intruder.locator(".ws.locked").count() == 1
        keys(intruder, "Enter", "x", "2")
        assert intruder.locator(".ws-badge").inner_text() == "to do"
        assert f"first is labelling frame {frame.pk}" in message.inner_text()
        assert intruder.locator("input[type=search]").is_disabled()
        intruder.screenshot(path=str(screenshots / "workspace-locked.png"))
        # Nothing else is free for the second annotator either.
        intruder.goto(f"{live_server.url}/label/")
        intruder.wait_for_selector("text=Nothing to label right now", timeout=TIMEOUT)
    finally:
        other.close()
    assert not Label.objects.exists()


def test_submit_errors_are_shown_and_a_retry_keeps_the_answers(page, live_server, scene):
    frame, products = scene["frame"], scene["products"]
    user = UserFactory(username="ann", company=scene["company"], role="annotator")
    log_in(page, live_server, "ann")
    page.goto(f"{live_server.url}/label/")
    page.wait_for_selector(".ws-tag", timeout=TIMEOUT)
    why = page.locator(".ws-candidate").first.inner_text()
    assert "shelf +0.10" in why  # the realgram "why"
    assert "labelled on the previous frame +0.14 (looks 0.97 alike)" in why  # and tracking's
    assert "previous frame" not in page.locator(".ws-candidate").nth(1).inner_text()
    keys(page, "Enter", "3", "x")  # confirmed, corrected to the third candidate, deleted
    # A reload keeps the answers not sent yet.
    page.reload()
    page.wait_for_selector(".ws-message:has-text('Restored your unsent answers for 3 boxes')", timeout=TIMEOUT)

    answers = []
    def refuse(route):
        answers.append(route.request.post_data_json)
        route.fulfill(status=400, json={"detail": "Box 99 is not on this frame."})
    page.route("**/submit/", refuse)
    keys(page, "s")
    message = page.locator(".ws-message.error")
    message.wait_for(timeout=TIMEOUT)
    assert "Box 99 is not on this frame." in message.inner_text()
    page.unroute("**/submit/")

    page.route("**/submit/", lambda route: route.abort("internetdisconnected"))
    keys(page, "Control+Enter")
    page.wait_for_selector(".ws-message.error:has-text('Your answers are kept')", timeout=TIMEOUT)
    page.unroute("**/submit/")
    chips = page.locator(".ws-chip").evaluate_all("chips => chips.map(chip => chip.title)")
    assert chips == ["1 confirmed", "1 corrected", "1 deleted"]

    keys(page, "s")
    page.wait_for_selector("text=Nothing to label right now", timeout=TIMEOUT)
    boxes = list(frame.boxes.order_by("pk"))
    sent = {a["id"]: a for a in answers[0]["boxes"]}
    assert sent[boxes[0].pk]["product_id"] == products[0].pk and sent[boxes[0].pk]["time_spent_ms"] > 0
    assert sent[boxes[2].pk]["deleted"] is True
    labels = {label.box_id: (label.action, label.product_id, label.annotator_id)
              for label in Label.objects.filter(box__frame=frame)}
    assert labels == {boxes[0].pk: ("confirmed", products[0].pk, user.pk),
                      boxes[1].pk: ("corrected", products[2].pk, user.pk),
                      boxes[2].pk: ("deleted", None, user.pk)}


def chips(page):
    return page.locator(".ws-chip").evaluate_all("chips => chips.map(chip => chip.title)")


def open_scene_frame_as_annotator(page, live_server, scene) -> list:
    """Log an annotator of the scene's company in and open its frame; the page's script errors, to check."""
    UserFactory(username="ann", company=scene["company"], role="annotator")
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    log_in(page, live_server, "ann")
    page.goto(f"{live_server.url}/frames/{scene['frame'].pk}/label/")
    page.wait_for_selector(".ws-tag", timeout=TIMEOUT)
    return errors


def test_undo_covers_every_action_and_zoom_keys_work(page, live_server, scene):
    errors = open_scene_frame_as_annotator(page, live_server, scene)
    zoom = page.locator("[data-ref=zoom]")
    fitted = zoom.inner_text()
    keys(page, "+", "+")
    assert zoom.inner_text() != fitted
    keys(page, "Shift+ArrowRight", "z", "0")
    assert zoom.inner_text() == fitted

    keys(page, "Shift+Enter")
    assert chips(page) == ["3 confirmed"]
    keys(page, "u")
    assert chips(page) == ["3 to do"]

    keys(page, "n")
    stage = page.locator(".ws-stage").bounding_box()
    page.mouse.move(stage["x"] + 5, stage["y"] + 5)
    page.mouse.down()
    page.mouse.move(stage["x"] + 60, stage["y"] + 40, steps=4)
    page.mouse.up()
    keys(page, "Escape")
    assert "still needs a product" in page.locator(".ws-message").inner_text()
    assert page.locator(".ws-tag").count() == 4 and chips(page) == ["4 to do"]
    keys(page, "Control+z")
    assert page.locator(".ws-tag").count() == 3 and selected_number(page) == "#1"

    keys(page, "x")
    assert chips(page) == ["1 deleted", "2 to do"]
    keys(page, "u")
    assert chips(page) == ["3 to do"] and selected_number(page) == "#1"

    # Enter right after typing picks the first result once it arrives.
    keys(page, "/")
    page.keyboard.type("orange")
    keys(page, "Enter")
    page.wait_for_function("document.querySelector('.ws-chip')?.title === '1 corrected'", timeout=TIMEOUT)
    keys(page, "u")
    assert chips(page) == ["3 to do"]
    keys(page, "Control+Shift+z")
    assert chips(page) == ["1 corrected", "2 to do"]
    assert "Orange juice" in page.locator(".ws-tag").first.inner_text()
    assert errors == []


def test_the_workspace_pages_need_access(client, scene):
    outsider = UserFactory(username="outsider", company=CategoryFactory().company, role="annotator")
    client.force_login(outsider)
    assert client.get(f"/frames/{scene['frame'].pk}/label/").status_code == 404
    assert client.get("/label/").status_code == 200
    client.logout()
    assert client.get("/label/").status_code == 302


def test_search_results_are_in_view_at_laptop_size_with_thumbnails_and_full_names(browser, live_server):
    """17.2: at 1366x768, with a box showing seven candidates, the catalogue results sit inside the
    window and above the sticky Confirm/Delete bar; each has its thumbnail and its full name on hover."""
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    names = [f"Organic cold-pressed apple and ginger juice, family bottle {i}" for i in range(1, 8)]
    products = [with_thumbnail(ProductFactory(company=company, name=name), i) for i, name in enumerate(names)]
    frame = FrameFactory(shelf=shelf, status=Frame.Status.READY, captured_at=MONDAY,
                         blocks=[((20, 25, 80, 110), 0)])
    version, _ = PipelineVersion.objects.get_or_create(name="v1")
    box = BoxFactory(frame=frame, x=20, y=25, w=80, h=110)
    Prediction.objects.create(box=box, pipeline_version=version, product=products[0], score=0.9,
                              candidates=[{"product_id": p.pk, "score": 0.9 - 0.1 * k, "components": {"knn": 0.9}}
                                          for k, p in enumerate(products)])
    schedule_frame(frame=frame)
    UserFactory(username="ann", company=company, role="annotator")

    context = browser.new_context(viewport={"width": 1366, "height": 768})
    try:
        page = context.new_page()
        log_in(page, live_server, "ann")
        page.goto(f"{live_server.url}/frames/{frame.pk}/label/")
        page.wait_for_selector(".ws-tag", timeout=TIMEOUT)
        assert page.locator(".ws-candidate").count() == 7
        keys(page, "/")
        page.keyboard.type("ginger")
        page.wait_for_function("document.querySelectorAll('#ws-results li[role=option]').length === 7",
                               timeout=TIMEOUT)
        page.wait_for_timeout(300)  # any scrolling settles
        results = page.locator("#ws-results").bounding_box()
        bar = page.locator(".ws-box-actions").bounding_box()
        rows = page.locator("#ws-results li[role=option]")
        first, last = rows.first.bounding_box(), rows.last.bounding_box()
        # The list is in the window, not under the bar, and shows at least its first five rows whole.
        assert results["y"] >= 0 and results["y"] + results["height"] <= 768
        assert results["y"] + results["height"] <= bar["y"] + 1, (results, bar)
        fifth = rows.nth(4).bounding_box()
        assert first["y"] >= results["y"] - 1 and fifth["y"] + fifth["height"] <= results["y"] + results["height"] + 1
        assert last["height"] > 0
        # Thumbnails, and full names in the title of each row's name (names are cut with an ellipsis).
        assert page.locator("#ws-results li[role=option] .ws-thumb img").count() == 7
        titles = page.locator("#ws-results li[role=option] .name").evaluate_all("els => els.map(e => e.title)")
        assert sorted(titles) == sorted(names)
        candidate_titles = page.locator(".ws-candidate .name").evaluate_all("els => els.map(e => e.title)")
        assert sorted(candidate_titles) == sorted(names)
        # The highlighted row moves and stays in view; Enter picks it.
        keys(page, "ArrowDown", "ArrowDown", "ArrowDown", "ArrowDown", "ArrowDown", "ArrowDown")
        active = page.locator("#ws-results li.active").bounding_box()
        results = page.locator("#ws-results").bounding_box()
        assert results["y"] - 1 <= active["y"] and active["y"] + active["height"] <= results["y"] + results["height"] + 1
        assert active["y"] + active["height"] <= page.locator(".ws-box-actions").bounding_box()["y"] + 1
    finally:
        context.close()


def test_undo_history_survives_a_reload_and_is_cleared_on_submit(page, live_server, scene):
    """17.4: the undo/redo history is kept in sessionStorage, keyed by frame and lease holder."""
    frame = scene["frame"]
    errors = open_scene_frame_as_annotator(page, live_server, scene)
    keys(page, "Enter", "3")  # #1 confirmed, #2 corrected
    assert chips(page) == ["1 confirmed", "1 corrected", "1 to do"]
    page.reload()
    page.wait_for_selector(".ws-message:has-text('Restored your unsent answers for 2 boxes')", timeout=TIMEOUT)
    stored = f"sessionStorage.getItem('shelf-annotator:undo:{frame.pk}:ann')"
    assert page.evaluate(stored) is not None
    keys(page, "u")
    assert chips(page) == ["1 confirmed", "2 to do"]
    keys(page, "u")
    assert chips(page) == ["3 to do"]
    keys(page, "u")
    assert "Nothing to undo" in page.locator(".ws-message").inner_text()
    keys(page, "Shift+U")
    assert chips(page) == ["1 confirmed", "2 to do"]
    # The redo stack survives a reload as well.
    page.reload()
    page.wait_for_selector(".ws-message:has-text('Restored your unsent answers for 1 box')", timeout=TIMEOUT)
    keys(page, "Shift+U")
    assert chips(page) == ["1 confirmed", "1 corrected", "1 to do"]
    assert "Orange juice" not in page.locator(".ws-tag").nth(1).inner_text()  # the third candidate: Oat milk
    # A product found by search (not among the frame's candidates) is still named after undo, reload, redo.
    ProductFactory(company=scene["company"], name="Lemonade")
    keys(page, "/")
    page.keyboard.type("lemon")
    keys(page, "Enter")
    page.wait_for_function("document.querySelectorAll('.ws-tag')[2]?.innerText.includes('Lemonade')", timeout=TIMEOUT)
    keys(page, "u")
    page.reload()
    page.wait_for_selector(".ws-message:has-text('Restored your unsent answers for 2 boxes')", timeout=TIMEOUT)
    keys(page, "Shift+U")
    assert "Lemonade" in page.locator(".ws-tag").nth(2).inner_text()
    keys(page, "s")
    page.wait_for_selector("text=Nothing to label right now", timeout=TIMEOUT)
    assert page.evaluate(stored) is None
    assert page.evaluate("Object.keys(sessionStorage).filter(k => k.startsWith('shelf-annotator:undo:'))") == []
    assert Label.objects.filter(box__frame=frame).count() == 3
    assert Label.objects.filter(box__frame=frame, product__name="Lemonade").count() == 1
    assert errors == []
