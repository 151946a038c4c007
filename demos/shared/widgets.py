"""Widgets several tabs build the same way: the seed controls, scrolling to a result, the result image style."""
from __future__ import annotations

import gradio as gr

RESULT = "pp-result"  # elem_classes of an image that shows a generated result
# gr.Markdown(latex_delimiters=MATH): $$...$$ as displayed equations, $...$ inline (KaTeX)
MATH = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


def scroll_into_view_on(button, elem_id: str) -> None:
    """When `button` is clicked, bring the element `elem_id` (the results) into view, so a run started
    from an example at the bottom of a long page shows its progress and result, not the examples."""
    button.click(None, js=f"() => document.getElementById('{elem_id}')?.scrollIntoView({{block: 'start'}})",
                 api_visibility="private")


def seed_controls(default: int = 0):
    """A seed box and a randomise toggle; handlers return the seed they used into the box."""
    with gr.Row():
        # No `precision=0`: it would round a seed of 1.5 to 2 silently; the run refuses it instead.
        seed = gr.Number(label="Seed", value=default, minimum=0)
        randomize = gr.Checkbox(label="Random seed", value=False)
    return seed, randomize
