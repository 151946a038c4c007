"""Browser test: load an example layout in the box editor and run the layout-guidance, GLIGEN and
side-by-side tabs in the live tiny-profile app; the images and attention maps appear."""
from __future__ import annotations

import re

from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()

EXAMPLE_PROMPT = "a teddy bear and a red ball on a wooden table"
SERVED = re.compile(r"/gradio_api/file=.*\.png")


def _load_example_and_set_steps(page, steps: int, open_settings: bool) -> None:
    from playwright.sync_api import expect

    panel = page.locator(".paper-tab:visible")
    panel.get_by_role("button", name=EXAMPLE_PROMPT).first.click()
    expect(panel.get_by_label("Prompt", exact=True)).to_have_value(EXAMPLE_PROMPT, timeout=15_000)
    expect(panel.locator(".box-text textarea")).to_have_value(
        "teddy bear: 0.100, 0.150, 0.550, 0.850\nred ball: 0.620, 0.550, 0.900, 0.850")
    panel.get_by_role("button", name="Show typed boxes on the canvas").click()
    page.wait_for_timeout(1000)
    panel.get_by_role("button", name="Use the drawn boxes").click()  # canvas → text: the same two boxes
    expect(panel.locator(".box-text textarea")).to_have_value(
        re.compile(r"^teddy bear: 0\.1\d\d, 0\.1\d\d, 0\.5\d\d, 0\.8\d\d\nred ball: "), timeout=15_000)
    if open_settings:
        panel.get_by_text("Guidance settings (paper defaults)").click()
    steps_box = panel.get_by_label("number input for Steps", exact=True)
    steps_box.fill(str(steps))
    steps_box.press("Enter")
    steps_box.blur()  # the slider takes the typed value on blur; check it did before generating
    expect(panel.get_by_label("range slider for Steps", exact=True)).to_have_value(str(steps), timeout=45_000)


def test_box_tabs_run_an_example_layout_and_show_images_and_attention_maps(app_server, page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(app_server.url)
    expect(page.locator("#tiny-banner")).to_contain_text("random weights", timeout=30_000)

    open_tab(page, "Layout guidance")
    _load_example_and_set_steps(page, 3, open_settings=True)
    page.get_by_role("button", name="Generate with layout guidance").click()
    expect(page.locator("#lg-summary")).to_contain_text("teddy bear", timeout=120_000)
    for output in ("#lg-boxed", "#lg-maps"):  # images are lazy-loaded: check they were sent
        expect(page.locator(f"{output} img")).to_have_attribute("src", SERVED, timeout=30_000)
    page.locator("#lg-boxed").scroll_into_view_if_needed()
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / "layout_guidance.png"), full_page=True)
    page.locator("#lg-maps").screenshot(path=str(ARTIFACTS / "layout_guidance_maps.png"))  # README's mechanism view

    open_tab(page, "GLIGEN")
    _load_example_and_set_steps(page, 2, open_settings=False)
    page.get_by_role("button", name="Generate with GLIGEN").click()
    expect(page.locator("#gligen-boxed img")).to_have_attribute("src", SERVED, timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "gligen.png"), full_page=True)

    open_tab(page, "Boxes side by side")
    _load_example_and_set_steps(page, 2, open_settings=False)
    page.get_by_role("button", name="Generate all three").click()
    for output in ("#sbs-plain", "#sbs-guided", "#sbs-gligen"):
        expect(page.locator(f"{output} img")).to_have_attribute("src", SERVED, timeout=120_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / "boxes_side_by_side.png"), full_page=True)

    # Bad input is reported, not crashed on: a phrase that is not in the prompt.
    open_tab(page, "Layout guidance")
    panel = page.locator(".paper-tab:visible")
    panel.locator(".box-text textarea").fill("dragon: 0.1, 0.1, 0.5, 0.5")
    panel.get_by_role("button", name="Generate with layout guidance").click()
    expect(page.get_by_text("The phrase 'dragon' is not in the prompt").first).to_be_visible(timeout=30_000)


def test_the_box_canvas_opens_in_create_mode_and_examples_read_as_prompts(app_server, page):
    """Dragging on a fresh canvas draws a box (no tool to find first); examples are listed by prompt."""
    from playwright.sync_api import expect

    page.goto(app_server.url, wait_until="load")
    open_tab(page, "Layout guidance")
    panel = page.locator(".paper-tab:visible")
    expect(panel.get_by_role("button", name=EXAMPLE_PROMPT)).to_be_visible()
    expect(panel.get_by_text("`phrase")).to_have_count(1)  # only the text box's own label
    canvas = panel.locator(".box-canvas canvas").first
    canvas.wait_for()
    page.wait_for_timeout(1000)
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.05)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.25, steps=8)
    page.mouse.up()
    page.get_by_role("button", name="OK", exact=True).click()  # the new box's label dialog
    panel.get_by_role("button", name="Use the drawn boxes").click()
    expect(panel.locator(".box-text textarea")).to_have_value(re.compile(r"(.*\n){2}.*"), timeout=15_000)
