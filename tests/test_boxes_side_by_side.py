"""Boxes side by side: one seed, and each column is exactly its own tab's output, made
with the controls as given."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

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


BASE = dict(prompt=PROMPT, layout=LAYOUT, steps=1, seed=5, randomize=False)


@pytest.mark.parametrize("change", [
    {}, {"prompt": "a red ball and a teddy bear on a beach"}, {"layout": "red ball: 0.1,0.1,0.4,0.4"}, {"steps": 2},
    {"seed": 6}, {"randomize": True},
], ids=["base", "prompt", "layout", "steps", "seed", "randomize"])
def test_each_control_reaches_both_methods_as_itself_and_one_seed_is_shared(change, monkeypatch):
    """The tab runs the other tabs' own `run_*` (their files test what those do with each argument): every
    control must arrive in both unchanged, and randomize must draw one seed that GLIGEN then reuses."""
    from demos.tabs import boxes_side_by_side as tab

    received = {}
    for name in ("run_layout_guidance", "run_gligen"):
        original = getattr(tab, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            arguments = inspect.signature(_original).bind(*args, **kwargs).arguments
            received[_name] = {key: value for key, value in arguments.items() if key != "progress"}
            return _original(*args, **kwargs)

        monkeypatch.setattr(tab, name, spy)
    settings = {**BASE, **change}
    result = run_side_by_side(**settings)
    assert received["run_layout_guidance"] == {**settings, "compare_unguided": True}
    seed = result.guided.parameters["seed"]
    assert received["run_gligen"] == {key: settings[key] for key in ("prompt", "layout", "steps")} | {"seed": seed}
    assert result.seed == seed and (seed != BASE["seed"] if settings["randomize"] else seed == settings["seed"])
