"""Browser test: scrub the forward-process slider and run DDIM in the live tiny-profile app."""
from __future__ import annotations

from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()


def test_scrub_the_forward_process_then_sample_with_ddim(app_server, page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(app_server.url)
    expect(page.locator("#tiny-banner")).to_contain_text("random weights", timeout=30_000)
    open_tab(page, "How diffusion samples")
    slider = page.locator("#forward-t input[type=range]")
    info = page.locator("#forward-info")
    for t in ("600", "0"):
        slider.fill(t)
        expect(info).to_contain_text(f"t = {t}", timeout=60_000)
    expect(info).to_contain_text("ᾱ_t = 1.0000")  # t = 0 is the clean image
    expect(page.locator("#forward-noisy img")).to_be_visible()

    page.get_by_role("tab", name="DDPM / DDIM (pixels)").click()
    steps = page.locator("#pixel-steps input[type=number]")
    steps.fill("4")
    steps.press("Enter")
    page.get_by_role("button", name="Sample", exact=True).click()
    expect(page.locator("#pixel-info")).to_contain_text("DDIM-4, η = 0: 4 UNet calls", timeout=120_000)
    expect(page.locator("#pixel-trajectory img")).to_have_count(4)
    page.screenshot(path=str(ARTIFACTS / "diffusion_basics.png"), full_page=True)
