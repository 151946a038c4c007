"""Browser: every tab at a projector's 1024×768 and a laptop's 1280×800 — built, nothing wider than the
window — screenshotted for a person to look at; results readable; a run's result scrolled into view."""
from __future__ import annotations

import pytest

from demos import DEMOS
from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()

VIEWPORTS = {"1280x800": (1280, 800), "1024x768": (1024, 768)}


def slug(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_every_tab_is_built_and_fits_the_window_at_class_sizes(app_server, page, viewport):
    """No tab shows the could-not-be-loaded panel, and none makes the page scroll sideways (a wide table
    or image would push part of a tab off a projector's screen)."""
    width, height = VIEWPORTS[viewport]
    folder = ARTIFACTS / "layout"
    folder.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": width, "height": height})
    page.goto(app_server.url, wait_until="load")
    page.locator("[role=tab]").first.wait_for()
    for demo in DEMOS:
        open_tab(page, demo.title)
        panel = page.locator(".paper-tab:visible")
        panel.locator("button").first.wait_for()
        assert not panel.get_by_text("could not be loaded").count(), demo.title
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width, f"{demo.title} scrolls sideways"
        page.screenshot(path=str(folder / f"{slug(demo.title)}-{viewport}.png"))


# The element that shows each generative tab's (first) result.
RESULTS = {"ControlNet": "controlnet-images", "Face swap (DiffFace)": "face-swap-result",
           "Layout guidance": "lg-boxed", "GLIGEN": "gligen-boxed", "Boxes side by side": "sbs-plain",
           "Paint-by-Example": "pbe-results"}


def test_results_are_readable_on_a_projector(app_server, page):
    """At 1280×800 a generated image gets at least ~400 px, and its label stays on one line (a wrapped
    label runs into the image's toolbar)."""
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(app_server.url, wait_until="load")
    page.locator("[role=tab]").first.wait_for()
    for title, elem_id in RESULTS.items():
        open_tab(page, title)
        result = page.locator(f"#{elem_id}")
        result.wait_for()
        assert result.bounding_box()["width"] >= 380, title
        label = result.locator("label").first
        assert label.bounding_box()["height"] <= 30, f"{title}: the label wraps"


def test_a_run_started_from_an_example_at_the_bottom_shows_its_result(app_server, page):
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(app_server.url, wait_until="load")
    open_tab(page, "ControlNet")
    page.get_by_role("gridcell", name="a cartoon cat").click()  # the last example, at the bottom
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("a cartoon cat", timeout=15_000)
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator("#controlnet-maps")).to_be_in_viewport(timeout=20_000)


def test_vqa_chat_is_tall_and_model_names_fit_and_the_clip_table_waits_for_a_run(app_server, page):
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(app_server.url, wait_until="load")
    open_tab(page, "Visual QA: BLIP-2 vs LLaVA")
    chat = page.locator("#vqa-llava-chat")
    chat.wait_for()
    assert chat.bounding_box()["height"] >= 400
    pickers = page.locator(".vqa-model input")
    expect(pickers).to_have_count(2)
    for index in range(2):
        assert pickers.nth(index).evaluate("input => input.scrollWidth <= input.clientWidth"), "name cut off"
    open_tab(page, "CLIP zero-shot")
    page.get_by_role("tab", name="Many images × many texts").click()
    expect(page.get_by_role("button", name="Compute similarity matrix")).to_be_visible()
    expect(page.locator("#clip-softmax")).to_be_hidden()  # no placeholder "1 2 3" headers before a run
