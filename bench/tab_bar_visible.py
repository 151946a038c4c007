"""Seconds from opening the page in a browser until its tab bar shows (tiny profile, the app already up),
at a laptop's 1280×800: what a class waits for after typing the address. Target: within 4 s.

    python bench/tab_bar_visible.py            # 5 page loads, the median of the last 4
"""
from __future__ import annotations

import argparse
import statistics
import time

from serving import AppServer
from tests.conftest import CHROMIUM, CHROMIUM_ARGS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    server = AppServer()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            seconds = []
            for _ in range(args.loads):
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                started = time.perf_counter()
                page.goto(server.url)
                page.locator("[role=tab]").first.wait_for(state="visible")
                seconds.append(time.perf_counter() - started)
                page.close()
            browser.close()
    finally:
        server.stop()
    print(f"tab bar visible after {statistics.median(seconds[1:]):.2f} s (median of loads 2-{args.loads}; "
          f"all: {', '.join(f'{s:.2f}' for s in seconds)}) (target <= 4 s)")


if __name__ == "__main__":
    main()
