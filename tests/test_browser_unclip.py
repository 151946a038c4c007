"""Browser test: variations of the example image through unCLIP's decoder in the live tiny-profile app."""
from __future__ import annotations

from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()


def test_make_variations_of_an_image(app_server, page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(app_server.url, wait_until="load")
    open_tab(page, "unCLIP")
    page.get_by_role("tab", name="Variations", exact=True).click()
    page.get_by_role("button", name="Make variations", exact=True).click()
    info = page.locator("#unclip-variation-info")
    expect(info).to_contain_text("no prior, no text", timeout=240_000)
    expect(page.locator("#unclip-variations img")).to_have_count(2)
    page.locator("#unclip-variation-results").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "unclip.png"))
