"""Browser test: load the LoRA, move its weight slider, generate — at weight 0 the picture is plain SD."""
from __future__ import annotations

from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()


def test_load_a_lora_move_its_weight_slider_and_generate(app_server, page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(app_server.url)
    expect(page.locator("#tiny-banner")).to_contain_text("random weights", timeout=30_000)
    open_tab(page, "Personalisation")
    page.locator("#pers-method").get_by_text("LoRA", exact=True).click()
    weight = page.locator("#pers-lora-weight input[type=number]")
    info = page.locator("#pers-info")
    generate = page.get_by_role("button", name="Generate", exact=True)
    for value, distance in (("0", "latent distance from plain SD: 0.000"), ("0.8", "adapters during the run")):
        weight.fill(value)
        weight.press("Enter")
        generate.click()
        expect(info).to_contain_text(distance, timeout=180_000)
    expect(info).to_contain_text("lora-pokemon")
    expect(info).not_to_contain_text("latent distance from plain SD: 0.000")
    page.screenshot(path=str(ARTIFACTS / "personalisation.png"))
