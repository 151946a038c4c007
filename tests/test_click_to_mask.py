"""Click to mask: Segment Anything from clicks and a box (tiny SAM), in the scene's coordinate frame."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from segment_anything import SamPredictor

import models
from demos.shared.click_to_mask import add_click, parse_prompts, run_click_to_mask, segment, to_frame
from models import UserError
from models.sam import SAM_VIT_B
from tests.test_masks import scene


def test_a_click_returns_three_masks_of_the_scene_size_and_the_chosen_one():
    picture = scene(300, 200)
    result = run_click_to_mask(picture, "+ 150 100", SAM_VIT_B, choice="2")
    assert result.mask.size == (300, 200) and result.mask.mode == "L"
    assert len(result.candidates) == 3 and all(image.size == (300, 200) for image, _ in result.candidates)
    assert result.chosen == 1 and "chosen" in result.candidates[1][1]
    best = run_click_to_mask(picture, "+ 150 100", SAM_VIT_B, choice="best")
    assert best.chosen == int(np.argmax(best.scores))
    masks_, _ = segment(models.get(SAM_VIT_B), picture, parse_prompts("+ 150 100"))
    assert np.array_equal(np.asarray(result.mask) > 0, masks_[1])


def test_positive_and_negative_clicks_reach_the_predictor_in_its_frame(monkeypatch):
    """A 2048×1200 scene is shrunk to 1024×600 for SAM: the clicks and the box must be halved, keep their
    labels, and end up where the same clicks on the half-size picture end up; masks come back full size."""
    seen = []
    original = SamPredictor.predict

    def spy(self, point_coords=None, point_labels=None, box=None, **kwargs):
        seen.append((self.original_size, point_coords, point_labels, box))
        return original(self, point_coords=point_coords, point_labels=point_labels, box=box, **kwargs)

    monkeypatch.setattr(SamPredictor, "predict", spy)
    big = scene(2048, 1200)
    prompts = parse_prompts("+ 1000 600\n- 1500 300\nbox 100 200 1800 1000")
    big_masks, _ = segment(models.get(SAM_VIT_B), big, prompts)
    assert big_masks.shape == (3, 1200, 2048)
    size, coords, labels, box = seen[-1]
    assert size == (600, 1024)
    np.testing.assert_allclose(coords, [[500, 300], [750, 150]])
    assert labels.tolist() == [1, 0]
    np.testing.assert_allclose(box, [50, 100, 900, 500])
    half = big.resize((1024, 600), Image.Resampling.BILINEAR)
    half_masks, _ = segment(models.get(SAM_VIT_B), half, parse_prompts("+ 500 300\n- 750 150\nbox 50 100 900 500"))
    assert np.array_equal(half_masks, big_masks[:, ::2, ::2])


def test_coordinate_transform_and_click_text():
    np.testing.assert_allclose(to_frame([[10, 20], [0, 0]], (100, 50), (200, 25)), [[20, 10], [0, 0]])
    text = add_click("", 10, 20, "object")
    text = add_click(text, 30, 40, "background")
    text = add_click(text, 5, 6, "box")
    assert parse_prompts(text).box is None  # one corner only
    text = add_click(text, 50, 2, "box")
    parsed = parse_prompts(text)
    assert parsed.points.tolist() == [[10, 20], [30, 40]] and parsed.labels.tolist() == [1, 0]
    assert parsed.box.tolist() == [5, 2, 50, 6]
    assert parse_prompts(add_click(add_click(text, 1, 1, "box"), 2, 2, "box")).box.tolist() == [1, 1, 2, 2]


@pytest.mark.parametrize("picture, prompts, model, message", [
    (scene(64, 48), "", SAM_VIT_B, "Click on the object"),
    (scene(64, 48), "+ 70 10", SAM_VIT_B, "outside the 64x48 scene"),
    (scene(64, 48), "click 3 4", SAM_VIT_B, "Cannot read"),
    (scene(64, 48), "+ 3 4", "sam-vit-z", "Unknown Segment Anything"),
    (None, "+ 3 4", SAM_VIT_B, "scene to edit"),
    (Image.new("RGB", (9000, 300)), "+ 3 4", SAM_VIT_B, "Please scale it down"),
])
def test_bad_click_input_gets_a_clear_error(picture, prompts, model, message):
    with pytest.raises(UserError, match=message):
        run_click_to_mask(picture, prompts, model)


def test_a_click_during_a_segmentation_is_segmented_after_it_not_dropped():
    """Every click adds its point (the select runs each time), and the segmentation that follows a click runs
    again, with all the points, when the one in progress ends: gradio's default for an event, "once", ignores
    a trigger while the event is pending, so a second click during a slow segmentation would never show."""
    import gradio as gr

    from demos.shared.click_to_mask import segment_on_click

    with gr.Blocks() as blocks:
        scene_image, prompts, mode, model, choice = gr.Image(), gr.Textbox(), gr.Radio(), gr.Dropdown(), gr.Radio()
        segment_on_click(scene_image, prompts, mode, model, choice, [gr.Image()], lambda *args: None)
    modes = {fn.name: fn.trigger_mode for fn in blocks.fns.values()}
    assert modes == {"click": "multiple", "segment_after_click": "always_last"}
