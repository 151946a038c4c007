"""Browser test: the ControlNet tab's canny example in the live tiny-profile app shows a control map and images."""
from __future__ import annotations

from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()


def test_controlnet_canny_example_shows_control_map_and_image(app_server, page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(app_server.url)
    expect(page.locator("#tiny-banner")).to_contain_text("random weights", timeout=30_000)
    open_tab(page, "ControlNet")
    page.get_by_role("gridcell", name="an astronaut in a spacesuit, oil painting").click()
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("an astronaut in a spacesuit, oil painting",
                                                                  timeout=15_000)
    page.get_by_text("Generation", exact=True).click()  # open the accordion; 4 steps keep the test quick
    steps = page.get_by_label("number input for Steps")
    steps.fill("4")
    steps.press("Enter")
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator("#controlnet-info")).to_contain_text("extra parameters", timeout=120_000)
    expect(page.locator("#controlnet-maps img").first).to_be_visible()
    # ControlNet and T2I-Adapter (ticked by default) side by side, one image each.
    expect(page.locator("#controlnet-images img")).to_have_count(2)
    expect(page.locator("#controlnet-images")).to_contain_text("T2I-Adapter")
    page.screenshot(path=str(ARTIFACTS / "controlnet_canny.png"), full_page=True)
