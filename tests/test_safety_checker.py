"""The published safety checker, when on: it blanks what it flags, and the reader is told which images.

Off by default (checked in test_published_checkpoints: no files, no module). Here it is switched on for
the tiny SD base, and its thresholds are lowered below any cosine so that it flags every image: a pipeline
run (ControlNet, plain SD) and a tab's own decoding (layout guidance) must both come back black, and the
handler must say so in words.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import models
from demos.shared import handlers
from demos.tabs.controlnet import run_controlnet
from demos.tabs.layout_guidance import run_layout_guidance
from models.safety import collect_flags, report
from models.stable_diffusion import SD15

PHOTO = Image.new("RGB", (128, 128), (200, 120, 40))


@pytest.fixture
def flagging_checker(monkeypatch):
    """SD's checker on, flagging everything; every pipeline built with it is dropped afterwards."""
    monkeypatch.setattr(models.model_settings, "safety_checker", True)
    models.model_cache.clear()
    checker = models.get(SD15).safety_checker
    assert checker is not None
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(-1.0)
    yield checker
    models.model_cache.clear()


def is_black(image: Image.Image) -> bool:
    return not np.asarray(image).any()


def test_pipeline_images_it_flags_come_back_black_and_the_handler_says_which(flagging_checker, monkeypatch):
    said = []
    monkeypatch.setattr(handlers.gr, "Warning", lambda text, **kwargs: said.append(text))
    run = handlers.user_errors(lambda: run_controlnet(PHOTO, "canny", "a cup", steps=1, seed=1, compare_plain=True))
    result = run()
    assert all(is_black(image) for image in result.images + result.plain_images)
    assert len(said) == 1 and "blanked 2 of the 2 generated images" in said[0] and "--safety-checker off" in said[0]


def test_a_tabs_own_decoding_goes_through_the_checker_too(flagging_checker):
    with collect_flags() as flags:
        result = run_layout_guidance("a cup on a table", "a cup: 0.1,0.1,0.5,0.5", steps=1, guided_steps=1,
                                     iterations=1, seed=3)
    assert is_black(result.image) and flags and all(verdicts == [True] for verdicts in flags)  # each decode checked
    assert "image 1 of 1" in report(flags)


def test_nothing_is_said_when_nothing_was_flagged():
    assert report([[False, False]]) is None and report([]) is None
