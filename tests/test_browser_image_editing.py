"""Browser: InstructPix2Pix on an example, and a prompt-to-prompt word swap with its attention maps,
in the live tiny-profile app."""
from __future__ import annotations

from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()


def test_instruct_pix2pix_on_an_example(app_server, page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(app_server.url)
    open_tab(page, "InstructPix2Pix")
    page.get_by_role("row").filter(has=page.locator("img")).first.click()  # chelsea: "turn the cat into a tiger"
    expect(page.locator("#ip2p-instruction textarea")).to_have_value("turn the cat into a tiger", timeout=30_000)
    steps = page.get_by_label("number input for Steps (Euler ancestral)")
    steps.fill("2")
    steps.press("Enter")
    expect(steps).to_have_value("2")
    page.get_by_role("button", name="Edit", exact=True).click()
    expect(page.locator("#ip2p-info")).to_contain_text("one UNet batch of 3 per step", timeout=120_000)
    expect(page.locator("#ip2p-results img").first).to_be_visible()
    expect(page.get_by_text("combined ε̃")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "instruct_pix2pix.png"))


def test_prompt_to_prompt_replaces_a_word(app_server, page):
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(app_server.url)
    open_tab(page, "Prompt-to-prompt")
    expect(page.locator("#p2p-edited textarea")).to_have_value("a dog riding a bicycle", timeout=30_000)
    page.get_by_text("Sampling and inversion settings").click()
    steps = page.get_by_label("number input for DDIM steps")
    steps.fill("3")
    steps.press("Enter")
    expect(steps).to_have_value("3")
    page.get_by_role("button", name="Edit the prompt").click()
    expect(page.locator("#p2p-info")).to_contain_text("replace a word", timeout=120_000)
    expect(page.locator("#p2p-results img")).to_have_count(2)
    expect(page.locator("#p2p-maps img")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "prompt_to_prompt.png"))
