"""Browser: segment everything on an example image, then a Grounded-SAM text prompt, in the live
tiny-profile app (random weights: the thresholds are opened so that masks come back)."""
from __future__ import annotations

import re

from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()


def set_number(page, elem_id: str, value: str) -> None:
    field = page.locator(f"#{elem_id} input[type=number]")
    field.fill(value)
    field.press("Enter")


def test_segment_everything_then_grounded_sam(app_server, page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(app_server.url)
    open_tab(page, "Segment Anything")
    page.locator("#sam-examples img").first.click()  # the cat
    expect(page.locator("#sam-image img").first).to_be_visible(timeout=30_000)

    set_number(page, "sam-points", "4")
    set_number(page, "sam-iou", "0")
    set_number(page, "sam-stability", "0")
    set_number(page, "sam-nms", "1")
    page.locator("#sam-everything").click()
    info = page.locator("#sam-info")
    expect(info).to_contain_text(re.compile(r"\d+ masks? from 16 point prompts \(48 candidates\) in [\d.]+ s"), timeout=120_000)
    expect(page.locator("#sam-result img").first).to_be_visible()
    table = page.get_by_role("grid", name="Masks")
    expect(table.get_by_role("gridcell", name="1", exact=True).first).to_be_visible()  # one row per mask
    page.screenshot(path=str(ARTIFACTS / "segment_anything_everything.png"))

    page.locator("#sam-text textarea").fill("cat. remote control.")
    set_number(page, "sam-box-threshold", "0.3")
    page.locator("#sam-grounded").click()
    expect(info).to_contain_text(re.compile(r"\d+ box(es)? for cat\. remote control\."), timeout=120_000)
    expect(info).to_contain_text("SAM mask")
    expect(table.get_by_role("row").nth(1)).to_contain_text(re.compile(r"^\s*1"))  # numbered rows, best box first
    expect(page.locator("#sam-result img").first).to_be_visible()
    page.locator("#sam-result").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "segment_anything_grounded.png"))
