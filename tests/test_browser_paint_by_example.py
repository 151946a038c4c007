"""Browser: load a Paint-by-Example example, mask the scene by clicking it (Segment Anything), generate,
see the pasted-back result."""
from __future__ import annotations

import re

from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()


def test_paint_by_example_click_to_mask_then_generate(app_server, page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(app_server.url)
    open_tab(page, "Paint-by-Example")
    page.get_by_role("row").filter(has=page.locator("img")).nth(1).click()  # scene, mask and reference
    scene = page.locator("#pbe-scene img").first
    expect(scene).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Clear clicks and mask").click()
    expect(page.locator("#pbe-mask img")).to_have_count(0, timeout=15_000)

    box = scene.bounding_box()
    scene.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.25})  # the helmet
    # A click made while the previous one is still being handled is dropped (gradio's trigger_mode "once").
    expect(page.locator("#pbe-prompts textarea")).to_have_value(re.compile(r"^\+ \d+ \d+$"), timeout=15_000)
    page.get_by_label("background (−)").check()
    scene.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.9})
    expect(page.locator("#pbe-prompts textarea")).to_have_value(
        re.compile(r"^\+ \d+ \d+\n- \d+ \d+$"), timeout=15_000)
    expect(page.locator("#pbe-scene .pp-click")).to_have_count(2)  # both clicks marked on the scene
    expect(page.locator("#pbe-sam img")).to_have_count(3, timeout=60_000)
    caption = page.locator("#pbe-sam").get_by_text("IoU").first
    expect(caption).to_be_visible()
    assert caption.evaluate("e => e.scrollWidth <= e.clientWidth"), "the IoU caption is cut off"
    thumbnail = page.locator("#pbe-sam img").first
    assert thumbnail.evaluate("img => getComputedStyle(img).objectFit") == "contain"  # a tall scene is not cropped
    expect(page.locator("#pbe-mask img").first).to_be_visible(timeout=30_000)

    panel = page.locator(".paper-tab:visible")  # a tab opened before stays in the page, hidden
    panel.get_by_text("Settings (the paper's demo defaults)").click()
    panel.get_by_label("number input for Steps", exact=True).fill("2")
    page.get_by_role("button", name="Paint the object in").click()
    expect(page.get_by_text("the model saw the square")).to_be_visible(timeout=90_000)
    expect(page.locator("#pbe-results img").first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "paint_by_example.png"), full_page=True)
