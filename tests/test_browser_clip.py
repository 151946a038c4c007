"""Browser test: Debian's chromium driven by Playwright against the live tiny-profile app."""
from __future__ import annotations

import re

from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()


def test_clip_tab_runs_an_example_and_shows_labels(app_server, page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(app_server.url)
    expect(page.locator("#tiny-banner")).to_contain_text("random weights", timeout=30_000)
    open_tab(page, "CLIP zero-shot")
    page.get_by_role("tab", name="Classify one image").click()
    page.get_by_role("gridcell", name="cat, dog, tiger, lion, fox").click()
    expect(page.get_by_label("Candidate labels (comma or newline separated)")).to_have_value(
        "cat, dog, tiger, lion, fox", timeout=15_000)
    page.get_by_role("button", name="Classify", exact=True).click()
    label_output = page.locator("[data-testid='label-output-value']")
    expect(label_output).to_have_text(re.compile(r"^\s*(cat|dog|tiger|lion|fox)\s*$"), timeout=60_000)
    expect(page.locator("#clip-prompts")).to_contain_text("a photo of a tiger.")
    page.screenshot(path=str(ARTIFACTS / "clip_zero_shot.png"), full_page=True)

    page.get_by_label("Candidate labels (comma or newline separated)").fill("")
    page.get_by_role("button", name="Classify", exact=True).click()
    expect(page.get_by_text("Please enter at least one label").first).to_be_visible(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "clip_zero_shot_error.png"), full_page=True)
