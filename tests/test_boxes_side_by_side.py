"""Boxes side by side: one seed, and each column is exactly its own tab's output."""
from __future__ import annotations

import numpy as np

from demos.shared.boxes import draw_boxes, parse_layout
from demos.tabs.boxes_side_by_side import run_side_by_side
from demos.tabs.gligen import run_gligen
from demos.tabs.layout_guidance import run_layout_guidance

PROMPT = "a teddy bear and a red ball on a wooden table"
LAYOUT = "teddy bear: 0.1,0.2,0.5,0.9\nred ball: 0.6,0.5,0.9,0.8"


def test_side_by_side_shares_one_seed_and_shows_each_tabs_own_image():
    result = run_side_by_side(PROMPT, LAYOUT, steps=2, seed=5)
    assert result.seed == 5 and result.guided.parameters["seed"] == 5
    assert result.plain.size == result.layout_guidance.size == result.gligen.size
    guided = run_layout_guidance(PROMPT, LAYOUT, steps=2, seed=5, compare_unguided=True)
    gligen = run_gligen(PROMPT, LAYOUT, steps=2, seed=5)
    assert np.array_equal(np.asarray(result.layout_guidance), np.asarray(guided.boxed))
    assert np.array_equal(np.asarray(result.gligen), np.asarray(gligen.boxed))
    plain = draw_boxes(guided.plain_image, parse_layout(LAYOUT))
    assert np.array_equal(np.asarray(result.plain), np.asarray(plain))
    assert not np.array_equal(np.asarray(result.plain), np.asarray(result.layout_guidance))
