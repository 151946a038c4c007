"""Browser: load a Compare preset, run it in the tiny profile, see the grid, download the export."""
from __future__ import annotations

import json

from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()


def test_compare_preset_runs_and_exports(app_server, page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(app_server.url)
    open_tab(page, "Compare")
    page.get_by_label("Ready-made comparisons for class").click()
    page.get_by_role("option", name="clip-three-models-two-templates").click()
    page.get_by_role("button", name="Load preset").click()
    expect(page.get_by_label("Values (comma separated, or one per line)")).to_have_value(
        "a photo of a {}.\na drawing of a {}.", timeout=15_000)
    page.get_by_role("button", name="Compare", exact=True).click()
    expect(page.get_by_text("Done: 6 cells")).to_be_visible(timeout=90_000)
    expect(page.locator(".thumbnail-item, .grid-wrap img").first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)
    with page.expect_download() as download:
        page.locator("#compare-json a").first.click()
    exported = json.loads(open(download.value.path()).read())
    assert exported["methods"] == ["clip-vit-base-patch32", "clip-vit-base-patch16", "clip-vit-large-patch14"]
    assert len(exported["cells"]) == 3 and len(exported["cells"][0]) == 2
