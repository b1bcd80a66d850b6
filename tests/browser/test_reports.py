"""The managers' dashboard in a real browser: filters, sorting, the chart, the CSV export."""
import pytest

from tests.browser.test_frames import log_in
from tests.report_data import decision_history

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
TIMEOUT = 15_000


def test_a_manager_reads_the_dashboard_sorts_it_and_exports_it(page, live_server, screenshots):
    history = decision_history()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, live_server, history["manager"].username)
    page.click("text=Reports")
    page.wait_for_selector("table.report", timeout=TIMEOUT)
    assert "of " in page.locator(".summary").inner_text() and "suggestions confirmed" in page.locator(".summary").inner_text()
    # The chart is a server-rendered image that loaded.
    page.wait_for_function("(() => { const img = document.querySelector('img.chart');"
                           " return img.complete && img.naturalWidth > 0; })()", timeout=TIMEOUT)

    page.select_option("select[name=by]", "annotator")
    page.fill("input[name=start]", "2024-03-04")
    page.fill("input[name=end]", "2024-03-14")
    page.click("button:has-text('Show')")
    page.wait_for_selector("td:has-text('ann0')", timeout=TIMEOUT)
    page.click("th a:has-text('Confirm rate')")  # ascending, then descending
    page.click("th a:has-text('Confirm rate')")
    page.wait_for_url("**sort=-confirm_rate**", timeout=TIMEOUT)
    rates = [float(text) for text in page.locator("td.rate").all_inner_texts() if text != "–"]
    assert rates == sorted(rates, reverse=True) and len(rates) == 2
    page.screenshot(path=str(screenshots / "reports-dashboard.png"), full_page=True)

    with page.expect_download() as download:
        page.click("#export-csv")
    path = download.value.path()
    lines = open(path, encoding="utf-8").read().splitlines()
    assert lines[0].startswith("group,boxes,suggested,confirmed") and len(lines) == 3
    assert errors == []
