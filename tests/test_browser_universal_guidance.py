"""Browser test: universal guidance with a face reference in the live tiny-profile app."""
from __future__ import annotations

from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()


def test_universal_guidance_with_a_face_reference(app_server, page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(app_server.url)
    expect(page.locator("#tiny-banner")).to_contain_text("random weights", timeout=30_000)
    open_tab(page, "Universal guidance")
    panel = page.locator(".paper-tab:visible")  # face swap, opened first in this topic, stays hidden in the page
    expect(panel.get_by_text("non-commercial research only").first).to_be_visible(timeout=30_000)
    steps = page.locator("#ug-steps input[type=number]")
    steps.fill("3")
    steps.press("Enter")
    expect(steps).to_have_value("3", timeout=15_000)
    page.get_by_role("button", name="Generate with universal guidance").click()
    summary = page.locator("#ug-summary")
    expect(summary).to_contain_text("Identity to the reference", timeout=240_000)  # the default guide: a face
    expect(summary).to_contain_text("plain SD")
    expect(summary).to_contain_text("3 DDIM steps")
    expect(page.locator("#ug-image img")).to_be_visible()
    expect(page.locator("#ug-filmstrip img").first).to_be_visible()
    page.locator("#ug-results").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "universal_guidance.png"))
