"""The README's top is what a new user (often a teacher) reads first: current screenshots, small
enough to load fast, and an install that works on a CPU-only laptop."""
from __future__ import annotations

import re

from PIL import Image

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
TOP = README.split("## Offline")[0]


def test_the_readme_shows_current_small_jpeg_screenshots():
    images = re.findall(r"!\[[^\]]*\]\((assets/[^)]+)\)", TOP)
    assert len(images) >= 2  # the page and a mechanism view
    for path in images:
        file = ROOT / path
        assert file.suffix == ".jpg" and file.stat().st_size < 200_000, path
        with Image.open(file) as image:
            assert image.format == "JPEG" and image.width >= 1000, path


def test_the_readme_top_says_how_to_install_how_big_and_how_long():
    assert "-m venv" in TOP
    assert "--index-url https://download.pytorch.org/whl/cpu" in TOP and "torch==2.14.1+cpu" in TOP
    assert re.search(r"\d+(\.\d+)? GB", TOP) and re.search(r"\d+–\d+ minutes", TOP)
    assert re.search(r"page\s+is up in about \d+ seconds", TOP)
