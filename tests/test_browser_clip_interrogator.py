"""Browser test: interrogate an example image in the tiny profile, see the prompt, the chain and
each bank's top phrases, and get the Compare plan that generates from the prompt."""
from __future__ import annotations

import re

from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()


def test_interrogator_tab_reconstructs_a_prompt_for_an_example(app_server, page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(app_server.url)
    expect(page.locator("#tiny-banner")).to_contain_text("random weights", timeout=30_000)
    open_tab(page, "CLIP interrogator")
    page.locator("#interrogator-examples button.gallery-item").first.click()  # chelsea.jpg
    expect(page.locator("#interrogator-image img")).to_be_visible(timeout=15_000)
    page.get_by_role("button", name="Interrogate", exact=True).click()

    info = page.locator("#interrogator-info")
    expect(info).to_contain_text("Greedy chain", timeout=90_000)
    for candidate in ("caption", "classic", "chain"):
        expect(info.get_by_role("cell", name=candidate, exact=True)).to_be_visible()
    expect(page.locator("#interrogator-prompt textarea")).not_to_have_value("")
    banks = page.locator("#interrogator-banks")
    for bank in ("mediums", "artists", "movements", "flavors"):
        expect(banks.get_by_text(bank, exact=True).first).to_be_attached()
    expect(banks).to_contain_text("by ")  # artists are ranked as "by <name>"

    page.get_by_role("button", name="Generate from this prompt (Compare plan, below)").click()
    expect(page.locator("#interrogator-plan")).to_contain_text(re.compile(r"generate-from-prompt\s*\.json"),
                                                                 timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "clip_interrogator.png"))

    # No image: a clear message instead of a stack trace.
    page.locator("#interrogator-image").get_by_role("button", name="Remove Image").click()
    expect(page.locator("#interrogator-image img")).to_have_count(0, timeout=15_000)
    page.get_by_role("button", name="Interrogate", exact=True).click()
    expect(page.get_by_text("Please provide an image to interrogate").first).to_be_visible(timeout=30_000)
