"""Browser: BEiT vs MAE on an example image, then mask a patch by clicking the masked view."""
from __future__ import annotations

import re

from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()


def test_mask_predict_then_click_a_patch(app_server, page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(app_server.url)
    open_tab(page, "BEiT vs MAE")
    page.locator("#mim-examples img").first.click()
    expect(page.locator("#mim-image img").first).to_be_visible(timeout=30_000)
    page.locator("#mim-run").click()
    info = page.locator("#mim-info")
    expect(info).to_contain_text("patches masked (blockwise", timeout=120_000)
    view = page.locator("#mim-masked img").first
    expect(view).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "masked_image_modeling.png"))

    box = view.bounding_box()
    view.click(position={"x": box["width"] * 0.05, "y": box["height"] * 0.05})  # the top-left patch
    expect(page.locator("#mim-patches textarea")).to_have_value(re.compile(r"^0 0$"), timeout=30_000)
    expect(info).to_contain_text("1 of 64 patches masked (patches", timeout=60_000)
