"""Segment Anything tab: everything mode, box prompts and Grounded-SAM (tiny SAM and Grounding DINO)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

import models
from demos.shared.click_to_mask import run_click_to_mask
from demos.tabs.segment_anything import (COMPARE_METHODS, colour_overlay, detector_text, palette, phrase, run_grounded_sam,
                                    run_segment_everything)
from models import UserError
from models.grounding_dino import GROUNDING_DINO_TINY
from tests.test_masks import scene

KEEP_ALL = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)


@pytest.fixture
def predictor_calls(monkeypatch):
    """Every SamPredictor.predict call's box and point arguments, as SAM received them."""
    calls = []
    original = SamPredictor.predict

    def spy(self, point_coords=None, point_labels=None, box=None, **kwargs):
        calls.append(dict(size=self.original_size, points=point_coords, box=None if box is None else np.array(box)))
        return original(self, point_coords=point_coords, point_labels=point_labels, box=box, **kwargs)

    monkeypatch.setattr(SamPredictor, "predict", spy)
    return calls


def test_everything_returns_scored_masks_and_their_count_grows_with_the_point_grid():
    picture = scene(80, 48)
    small = run_segment_everything(picture, points_per_side=2, **KEEP_ALL)
    large = run_segment_everything(picture, points_per_side=4, **KEEP_ALL)
    assert small.prompts == 4 and large.prompts == 16
    # With no filter, each point prompt keeps all three of its masks: the grid sets the count.
    assert 0 < len(small.masks) <= 3 * 4 < len(large.masks) <= 3 * 16
    for result in (small, large):
        assert result.masks.shape[1:] == (48, 80) and result.seconds > 0
        areas = [row[1] for row in result.rows]
        assert areas == [int(mask.sum()) for mask in result.masks] and areas == sorted(areas, reverse=True)
        assert all(isinstance(row[2], float) and isinstance(row[3], float) for row in result.rows)
    # A threshold no mask can pass leaves none: the filter is applied.
    assert len(run_segment_everything(picture, points_per_side=4, pred_iou_thresh=1.0, stability_score_thresh=0,
                                      box_nms_thresh=1.0).masks) == 0


@pytest.mark.parametrize("column, threshold", [(2, "pred_iou_thresh"), (3, "stability_score_thresh")])
def test_each_score_threshold_keeps_exactly_the_masks_scoring_above_it(column, threshold, monkeypatch):
    """With the other filters open, a threshold between two scores of the unfiltered run keeps exactly the
    masks above it: SAM's predicted IoU (column 2) and the stability score (column 3) are each applied.
    Random weights give every mask stability 0 (no logit reaches ±1), so the stability scores are made up:
    spread over (0, 1) in the order SAM scores the masks."""
    from segment_anything import automatic_mask_generator

    if threshold == "stability_score_thresh":
        monkeypatch.setattr(automatic_mask_generator, "calculate_stability_score",
                            lambda masks, *_: torch.linspace(0.05, 0.95, len(masks)))
    picture = scene(80, 48)
    everything = run_segment_everything(picture, points_per_side=3, **KEEP_ALL)
    scores = sorted({row[column] for row in everything.rows})
    assert len(scores) >= 3, "the unfiltered run should give masks of several scores"
    cut = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2
    kept = run_segment_everything(picture, points_per_side=3, **{**KEEP_ALL, threshold: cut})
    assert 0 < len(kept.masks) < len(everything.masks)
    assert sorted(row[column] for row in kept.rows) == sorted(row[column] for row in everything.rows
                                                              if row[column] > cut)


def test_the_overlay_colours_every_mask_and_nothing_else():
    picture = scene(60, 40, seed=3)
    masks = np.zeros((3, 40, 60), dtype=bool)
    masks[0, :20] = True
    masks[1, :, :30] = True
    masks[2, 30:, 50:] = True
    colours = palette(3)
    overlay = np.asarray(colour_overlay(picture, masks, colours)).astype(int)
    original = np.asarray(picture).astype(int)
    assert np.array_equal(overlay[~masks.any(0)], original[~masks.any(0)])
    expected = original.astype(float)
    for mask, colour in zip(masks, colours):
        expected[mask] = 0.45 * expected[mask] + 0.55 * np.array(colour)
        assert (np.abs(overlay[mask] - original[mask]).sum(-1) > 0).all()
    assert np.abs(overlay - np.rint(expected)).max() <= 1
    assert len(set(colours)) == 3
    result = run_segment_everything(picture, points_per_side=2, **KEEP_ALL)
    union = result.masks.any(0)
    shown = np.asarray(result.overlay).astype(int)
    assert np.array_equal(shown[~union], original[~union]) and (shown[union] != original[union]).any(-1).all()


@pytest.mark.parametrize("box", [(5, 8, 40, 30), (30, 2, 79, 47), (0, 0, 20, 20)])
def test_a_box_prompt_reaches_sam_as_given_and_its_mask_stays_inside_it(predictor_calls, box):
    picture = scene(80, 48, seed=1)
    text = "box " + " ".join(map(str, box))
    result = run_click_to_mask(picture, text, choice="best", clip_to_box=True)
    np.testing.assert_allclose(predictor_calls[-1]["box"], box)
    assert predictor_calls[-1]["points"] is None
    mask = np.asarray(result.mask) > 0
    x0, y0, x1, y1 = box
    outside = mask.copy()
    outside[y0:y1, x0:x1] = False
    assert not outside.any()
    unclipped = np.asarray(run_click_to_mask(picture, text, choice=str(result.chosen + 1)).mask) > 0
    assert np.array_equal(mask[y0:y1, x0:x1], unclipped[y0:y1, x0:x1])


@pytest.mark.parametrize("size", [(96, 64), (50, 120)])
def test_grounded_sam_sends_the_detectors_boxes_in_image_pixels_one_mask_each_labels_in_order(
        predictor_calls, monkeypatch, size):
    """The boxes SAM receives are Grounding DINO's normalised (cx, cy, w, h) scaled by the image's own
    width and height (a non-square image catches a swapped W/H), best first, and each mask and label
    stays with its box."""
    detector = models.get(GROUNDING_DINO_TINY)
    raw, labelled = {}, {}
    forward = detector.model.forward
    post_process = detector.processor.post_process_grounded_object_detection

    def spy_forward(*args, **kwargs):
        output = forward(*args, **kwargs)
        raw.update(logits=output.logits.detach().clone(), boxes=output.pred_boxes.detach().clone())
        return output

    def spy_post_process(*args, **kwargs):
        found = post_process(*args, **kwargs)
        labelled.update(found[0])
        return found

    monkeypatch.setattr(detector.model, "forward", spy_forward)
    monkeypatch.setattr(detector.processor, "post_process_grounded_object_detection", spy_post_process)
    width, height = size
    result = run_grounded_sam(scene(width, height, seed=2), "cat, remote control", box_threshold=0.3)
    cx, cy, w, h = raw["boxes"][0].T
    expected = torch.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
                            (cy + h / 2) * height], -1)
    expected[:, 0::2] = expected[:, 0::2].clamp(0, width)
    expected[:, 1::2] = expected[:, 1::2].clamp(0, height)
    scores = raw["logits"][0].sigmoid().max(-1).values
    sent = np.array([call["box"] for call in predictor_calls])
    assert len(sent) == len(result.boxes) == len(result.masks) == len(result.labels) > 0
    np.testing.assert_allclose(sent, result.boxes, atol=1e-4)
    assert result.masks.shape[1:] == (height, width)
    for box, score, label in zip(result.boxes, result.box_scores, result.labels):
        query = int(torch.argmin((expected - torch.tensor(box, dtype=expected.dtype)).abs().sum(-1)))
        np.testing.assert_allclose(box, expected[query].numpy(), atol=1e-3)
        assert score == pytest.approx(float(scores[query]), abs=1e-5) and score > 0.3
        kept = int(torch.argmin((labelled["scores"] - score).abs()))
        assert label == phrase(labelled["text_labels"][kept], detector.processor.tokenizer.all_special_tokens)
    assert result.box_scores == sorted(result.box_scores, reverse=True)
    for mask, box in zip(result.masks, result.boxes):
        outside = mask.copy()
        outside[int(np.floor(box[1])):int(np.ceil(box[3])), int(np.floor(box[0])):int(np.ceil(box[2]))] = False
        assert not outside.any()


def test_detector_prompt_format_and_bad_inputs():
    assert detector_text("A Cat, Remote Control") == "a cat. remote control."
    assert phrase("cat. remote [SEP]", ["[SEP]", "[CLS]"]) == "cat. remote" and phrase(" [SEP] ", ["[SEP]"]) == "?"
    assert detector_text("cat.\ndog") == "cat. dog."
    picture = scene(64, 64)
    with pytest.raises(UserError, match="prompt"):
        run_grounded_sam(picture, "   ")
    with pytest.raises(UserError, match="characters"):
        run_grounded_sam(picture, "cat " * 3000)
    with pytest.raises(UserError, match="tokens"):
        run_grounded_sam(picture, "xylophone. " * 30)
    with pytest.raises(UserError, match="box threshold"):
        run_grounded_sam(picture, "cat", box_threshold=1.5)
    with pytest.raises(UserError, match="found nothing"):
        run_grounded_sam(picture, "cat", box_threshold=1.0)
    with pytest.raises(UserError, match="Crop it"):
        run_grounded_sam(scene(200, 16), "cat")
    assert len(run_grounded_sam(scene(128, 32), "cat", box_threshold=0).masks) > 0
    with pytest.raises(UserError, match="Please provide"):
        run_segment_everything(None)
    with pytest.raises(UserError, match="Points per side"):
        run_segment_everything(picture, points_per_side=0)
    with pytest.raises(UserError, match="at least 16"):
        run_segment_everything(scene(1, 1))
    with pytest.raises(UserError, match="Unknown Segment Anything"):
        run_segment_everything(picture, model="sam-vit-q")


def test_compare_runs_sam_click_and_grounded_sam_on_one_image():
    picture = scene(64, 48)
    outputs = [method.run(image=picture, object="cat", click="10 10", **method.parameters)
               for method in COMPARE_METHODS]
    assert all(output.image.size == (64, 48) for output in outputs)
    assert "click 10 10" in outputs[0].text
