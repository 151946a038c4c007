"""Browser test: swap two example faces in the face-swap tab of the live tiny-profile app."""
from __future__ import annotations

from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()


def test_face_swap_tab_swaps_two_example_faces(app_server, page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(app_server.url)
    expect(page.locator("#tiny-banner")).to_contain_text("random weights", timeout=30_000)
    open_tab(page, "Face swap (DiffFace)")
    expect(page.locator("#face-swap-ethics")).to_contain_text("consent")
    estimate = page.locator("#face-swap-estimate")
    expect(estimate).to_contain_text("8 guided steps × 2 candidates")  # the quick settings are the default
    page.get_by_role("button", name="Full quality (DiffFace)").click()  # one click away
    expect(estimate).to_contain_text("75 guided steps × 4 candidates", timeout=15_000)
    page.get_by_role("button", name="Quick: 10 steps").click()
    expect(page.get_by_label("Steps (respaced)").first).to_have_value("10", timeout=15_000)
    page.get_by_role("button", name="Swap faces").click()
    summary = page.locator("#face-swap-summary")
    expect(summary).to_contain_text("source↔result", timeout=180_000)
    expect(summary).to_contain_text("1 face(s) in the target")
    expect(page.locator("#face-swap-result img")).to_be_visible()
    expect(page.get_by_text("candidate 2/2")).to_have_count(0, timeout=60_000)  # progress overlays gone
    expect(page.get_by_text("x0 at t=", exact=False).first).to_be_attached()
    expect(estimate).to_contain_text("expected ≈", timeout=15_000)  # the run measured a step
    page.screenshot(path=str(ARTIFACTS / "face_swap.png"), full_page=True)
