"""Browser: every tab at a projector's 1280×800 and at 1920×1080, screenshotted for a person to look at."""
from __future__ import annotations

import pytest

from demos import DEMOS
from tests.conftest import ARTIFACTS, require_browser

require_browser()

VIEWPORTS = {"1280x800": (1280, 800), "1920x1080": (1920, 1080)}


def slug(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_every_tab_renders_at_class_sizes(app_server, page, viewport):
    width, height = VIEWPORTS[viewport]
    folder = ARTIFACTS / "layout"
    folder.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": width, "height": height})
    page.goto(app_server.url, wait_until="load")
    page.locator("[role=tab]").first.wait_for()
    for demo in DEMOS:
        page.get_by_role("tab", name=demo.title, exact=True).click()
        page.wait_for_timeout(800)
        page.screenshot(path=str(folder / f"{slug(demo.title)}-{viewport}.png"), full_page=True)
