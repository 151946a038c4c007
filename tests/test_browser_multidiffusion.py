"""Browser test: generate a panorama with its window grid and baselines in the live tiny-profile app."""
from __future__ import annotations

from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()


def test_generate_a_panorama_and_see_its_windows_and_baselines(app_server, page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(app_server.url, wait_until="load")
    open_tab(page, "MultiDiffusion")
    page.get_by_role("button", name="Generate panorama", exact=True).click()
    summary = page.locator("#md-summary")
    expect(summary).to_contain_text("5 windows of 128 px", timeout=240_000)
    panorama = page.locator("#md-panorama img")
    expect(panorama).to_be_visible()
    # the requested width (3 tiny windows) and height come back, wider than the model's square
    assert panorama.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [384, 128]
    expect(page.locator("#md-grid img")).to_be_visible()
    expect(page.locator("#md-tiles img")).to_be_visible()
    page.locator("#md-results").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "multidiffusion.png"))
