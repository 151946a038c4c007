"""Browser: load a Paint-by-Example example (scene, mask, reference), generate, see the pasted result."""
from __future__ import annotations

from tests.conftest import ARTIFACTS, require_browser

require_browser()


def test_paint_by_example_runs_an_example(app_server, page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(app_server.url)
    page.get_by_role("tab", name="Paint-by-Example").click()
    page.get_by_role("row").filter(has=page.locator("img")).nth(1).click()
    page.get_by_text("Settings (the paper's demo defaults)").click()
    page.get_by_label("number input for Steps").fill("2")
    page.wait_for_timeout(5_000)  # the editor composes its layers after the example loads
    page.get_by_role("button", name="Paint the object in").click()
    expect(page.get_by_text("the model saw the square")).to_be_visible(timeout=90_000)
    expect(page.locator("#pbe-results img").first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "paint_by_example.png"), full_page=True)
