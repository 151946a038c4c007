"""Acceptance on the published checkpoints: each tab gives a semantically right answer on the bundled
public-domain images, through the API as a user would ask. Needs the network (and time; a GPU helps):

    bash scripts/test -m hub

Deselected unless `-m hub` is given; skipped, with the reason, when the Hugging Face Hub cannot be
reached. Every test asserts on the answer itself, so none can pass without running the model.
"""
from __future__ import annotations

import urllib.request

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image, ImageFilter

from demos.clip_zero_shot import ASSETS
from tests.conftest import AppServer

pytestmark = pytest.mark.hub
CAT = str(ASSETS / "chelsea.jpg")


def hub_unreachable() -> str | None:
    try:
        urllib.request.urlopen("https://huggingface.co/api/models/openai/clip-vit-base-patch32", timeout=10)
        return None
    except OSError as error:
        return f"the Hugging Face Hub is unreachable ({type(error).__name__}); hub acceptance tests need the network"


@pytest.fixture(scope="module")
def client():
    reason = hub_unreachable()
    if reason:
        pytest.skip(reason)
    server = AppServer("--models", "hub", env={"HF_HUB_OFFLINE": "0", "PP_MODELS": "hub"})
    yield Client(server.url, verbose=False)
    server.stop()


def test_clip_ranks_cat_first_for_the_cat_photo(client):
    top, *_ = client.predict(handle_file(CAT), "cat, dog, car, rocket", "a photo of a {}.",
                             "clip-vit-base-patch32", 4, api_name="/clip_zero_shot")
    best = max(top["confidences"], key=lambda row: row["confidence"])
    assert best["label"] == "cat" and best["confidence"] > 0.5, top


def test_blip2_and_llava_both_say_cat(client):
    blip2_answer, _, _, chat, *_ = client.predict(handle_file(CAT), "What animal is this?", [],
                                                  api_name="/vqa")
    llava_answer = str(chat[-1]["content"])
    assert "cat" in blip2_answer.lower(), blip2_answer
    assert "cat" in llava_answer.lower(), llava_answer


def edges(path: str, size: tuple[int, int]) -> np.ndarray:
    import cv2

    gray = np.asarray(Image.open(path).convert("L").resize(size))
    return cv2.Canny(gray, 100, 200) > 0


def edge_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_controlnet_output_follows_the_control_edges_far_more_than_plain_sd(client):
    maps, images, _ = client.predict(
        handle_file(str(ASSETS / "astronaut.jpg")), "canny", False, 512, 100, 200, 512,
        "a photo of an astronaut, best quality", "lowres, bad anatomy", 20, 7.5, 1, 1.0, 0.0, 1.0, False,
        "", None, 1.0, False, True, 0, api_name="/controlnet")
    control = np.asarray(Image.open(maps[0]["image"]).convert("L")) > 127
    size = control.shape[::-1]
    controlled, plain = (edges(item["image"], size) for item in (images[0], images[-1]))
    near_control = np.asarray(Image.fromarray(control).filter(ImageFilter.MaxFilter(5)))  # a 2-pixel tolerance
    assert edge_iou(controlled, near_control) > 3 * edge_iou(plain, near_control)


def test_sam_click_mask_covers_the_clicked_cat(client):
    _, mask_path = client.predict(handle_file(CAT), "+ 220 150", "sam-vit-b", "best", api_name="/click_to_mask")
    mask = np.asarray(Image.open(mask_path).convert("L")) > 127
    assert mask[150, 220], "the clicked pixel is outside the mask"
    assert 0.05 < mask.mean() < 0.8, "the mask is a speck or the whole picture"


# ---- Segment Anything tab (segment everything, Grounded-SAM) and BEiT vs MAE ----------------------

def test_grounded_sam_finds_and_masks_the_cat(client):
    overlay, summary, _, table, mask_path = client.predict(handle_file(CAT), "cat.", 0.3, 0.25, "sam-vit-b",
                                                           api_name="/grounded_sam")
    rows = table["data"]
    assert rows and "cat" in rows[0][1], rows
    mask = np.asarray(Image.open(mask_path).convert("L")) > 127
    assert mask[150, 220], "the cat's middle is outside the Grounded-SAM mask"
    assert 0.05 < mask.mean() < 0.8


def test_segment_everything_finds_many_masks_with_the_papers_thresholds(client):
    _, summary, _, table, _ = client.predict(handle_file(CAT), "sam-vit-b", 16, 0.88, 0.95, 0.7,
                                             api_name="/segment_everything")
    assert len(table["data"]) >= 5, summary


GREY_FILL_ERROR = 0.032  # MSE of mid-grey against the 224² centre of chelsea.jpg (pixels 0–1)


def test_mae_reconstructs_masked_pixels_and_beit_is_confident_about_tokens(client):
    outputs = client.predict(handle_file(CAT), "random", 0.75, "", 0, False, api_name="/masked_image_modeling")
    summary, table = outputs[1], outputs[6]
    error = float(summary.split("error on them: ")[1].split(" ")[0])
    assert error < GREY_FILL_ERROR / 2, summary
    probabilities = [row[3] for row in table["data"]]
    assert np.median(probabilities) > 50 / 8192, "BEiT's token predictions are no better than uniform"
