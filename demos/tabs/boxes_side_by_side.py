"""Boxes to image, side by side: plain Stable Diffusion, training-free layout guidance (Chen et al.)
and trained grounding (GLIGEN) for the same prompt, boxes and seed.

The one tab that imports others: it runs the layout-guidance and GLIGEN tabs' own `run_*`, as its
row in `demos.DEMOS` declares (`combines`)."""
from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from demos.shared.boxes import draw_boxes
from demos.shared.limits import LIMITS
from demos.tabs.gligen import run_gligen
from demos.tabs.layout_guidance import LayoutGuidanceResult, run_layout_guidance
from models import ProgressFn


@dataclass
class SideBySideResult:
    plain: Image.Image  # plain SD-1.5, boxes drawn for reference
    layout_guidance: Image.Image
    gligen: Image.Image
    seed: int
    guided: LayoutGuidanceResult


def run_side_by_side(prompt: str, layout: str, steps: int = 50, seed: int = 0, randomize: bool = False,
                     progress: ProgressFn | None = None) -> SideBySideResult:
    """The paper defaults of each method; one seed, resolved once and shared by all three."""
    guided = run_layout_guidance(prompt, layout, steps=steps, seed=seed, randomize=randomize,
                                 compare_unguided=True, progress=progress)
    seed = guided.parameters["seed"]
    gligen = run_gligen(prompt, layout, steps=steps, seed=seed, progress=progress)
    return SideBySideResult(draw_boxes(guided.plain_image, guided.boxes), guided.boxed, gligen.boxed,
                            seed, guided)


def build_ui() -> None:
    import gradio as gr

    from demos.shared.boxes import box_editor
    from demos.shared.handlers import user_errors
    from demos.shared.widgets import RESULT, scroll_into_view_on, seed_controls

    gr.Markdown(
        "One prompt, one layout, one seed, three methods: plain Stable Diffusion 1.5 (ignores the boxes), "
        "layout guidance on the same SD-1.5 (no training, words from the prompt), GLIGEN (SD-1.4 with "
        "trained grounding layers). Each uses its paper's defaults."
    )
    prompt, layout = box_editor()
    with gr.Row():
        steps = gr.Slider(1, LIMITS.max_steps, value=50, step=1, label="Steps")
    seed, randomize = seed_controls()
    generate = gr.Button("Generate all three", variant="primary")
    with gr.Row(elem_id="sbs-results"):
        plain = gr.Image(label="Plain SD-1.5", format="png", elem_id="sbs-plain", elem_classes=RESULT)
        guided = gr.Image(label="Layout guidance", format="png", elem_id="sbs-guided", elem_classes=RESULT)
        gligen = gr.Image(label="GLIGEN", format="png", elem_id="sbs-gligen", elem_classes=RESULT)

    @user_errors
    def generate_for_ui(prompt, layout, steps, seed, randomize, progress=gr.Progress(track_tqdm=True)):
        result = run_side_by_side(prompt, layout, steps, seed, randomize, progress)
        return result.plain, result.layout_guidance, result.gligen, result.seed

    generate.click(generate_for_ui, inputs=[prompt, layout, steps, seed, randomize],
                   outputs=[plain, guided, gligen, seed], api_name="boxes_side_by_side")
    scroll_into_view_on(generate, "sbs-results")
