"""Test setup: the offline tiny profile, no hub access, and a live app server for end-to-end tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Before `models` is imported anywhere: its settings are read from the environment.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["PP_MODELS"] = "tiny"
os.environ.setdefault("PP_TINY_DIR", tempfile.mkdtemp(prefix="pp-tiny-"))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(ROOT))

ARTIFACTS = ROOT / "artifacts"

if os.environ.get("PP_TORCH_THREADS"):  # CI's two passes differ in threads: properties must not flip
    import torch

    torch.set_num_threads(int(os.environ["PP_TORCH_THREADS"]))


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "mechanism: a property of a paper's mechanism that floating-point "
                                       "summation order could flip (a margin over seeds, an optimisation lowering "
                                       "a loss, two computation paths compared); CI reruns these on another thread count. "
                                       "Traces, exact blends and made-up inputs "
                                       "are not marked: thread count cannot change them.")
    config.addinivalue_line("markers", "hub: acceptance on the published checkpoints (network); run with -m hub")


# Test files that drive the page in Chromium, or hammer the app's API: under pytest-xdist (CI's
# `--dist loadgroup`) they all run on one worker, one at a time against its one app, as they were timed;
# two of them at once on two cores made waits for the page time out. Every other file is a group of its own.
SERVED_PAGE_FILES = ("test_browser_", "test_endpoint_fuzz.py")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items) -> None:
    """Hub acceptance tests download gigabytes: they run only when `-m hub` asks for them."""
    for item in items:
        served = item.path.name.startswith(SERVED_PAGE_FILES)
        item.add_marker(pytest.mark.xdist_group("served page" if served else item.path.name))
    if "hub" in (config.option.markexpr or ""):
        return
    hub = [item for item in items if item.get_closest_marker("hub")]
    if hub:
        config.hook.pytest_deselected(items=hub)
        items[:] = [item for item in items if not item.get_closest_marker("hub")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppServer:
    """`python app.py --models tiny` in a subprocess, as a user would start it."""

    def __init__(self, *extra_args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = Path(tempfile.mkstemp(prefix="pp-app-", suffix=".log")[1])
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "app.py", "--models", "tiny", "--port", str(self.port), *extra_args],
            cwd=ROOT, env={**os.environ, **(env or {})},
            stdout=self.log_path.open("w"), stderr=subprocess.STDOUT,
        )
        self.startup_seconds = self._wait_until_up()

    def _wait_until_up(self, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app exited early:\n{self.log()}")
            try:
                urllib.request.urlopen(self.url + "gradio_api/info", timeout=2)
                return time.perf_counter() - self.started
            except urllib.error.HTTPError:  # up, but e.g. behind auth
                return time.perf_counter() - self.started
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"app did not come up in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="session")
def app_server():
    server = AppServer()
    yield server
    server.stop()


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_browser() -> None:
    """Call at the top of a browser test module: skip without Chromium, except in CI."""
    if not CHROMIUM.exists():
        if os.environ.get("PP_REQUIRE_BROWSER"):
            raise RuntimeError("PP_REQUIRE_BROWSER is set but /usr/bin/chromium is missing (apt-get install chromium)")
        pytest.skip("Debian chromium is not installed", allow_module_level=True)


def open_tab(page, name: str) -> None:
    """Open a paper's tab as a reader does, in either language: its topic in the top bar, then the paper in
    the topic's bar (tab buttons carry their ids: `topic-<key>`, a paper's English title)."""
    from demos import DEMOS
    from demos.page.navigation import topics_with

    page.locator("[role=tab]").first.wait_for()
    demo = next(demo for demo in DEMOS if demo.title == name)
    topic, members = next((topic, members) for topic, members in topics_with(DEMOS) if demo in members)
    nested = not (len(members) == 1 and demo.title == topic.title)
    top_id = f"topic-{topic.key}" if nested else demo.title
    page.locator(f'#topics > .tab-wrapper [role=tab][data-tab-id="{top_id}"]').click()
    if nested:
        page.locator(f'.paper-tabs > .tab-wrapper [role=tab][data-tab-id="{name}"]').filter(visible=True).click()


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory):
    """One headless Debian Chromium for the whole session; tests open their own pages."""
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1100})
        yield context
        context.close()


@pytest.fixture
def page(browser_context):
    """A fresh tab; the page language a test switched to (cookie and localStorage) is forgotten after it."""
    page = browser_context.new_page()
    page.set_default_timeout(60_000)  # a click waits for a busy page: CI runs two test workers on two cores
    yield page
    if page.url.startswith("http"):
        page.evaluate("() => localStorage.removeItem('pp-lang')")
    browser_context.clear_cookies()
    page.close()
