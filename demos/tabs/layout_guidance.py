"""Training-free layout control with cross-attention guidance (Chen, Laina, Vedaldi, WACV 2024).

No training: during the first denoising steps the latent follows the gradient of an energy that
pulls each phrase's cross-attention inside its box (models/pipelines/layout_guidance.py). The tab
shows the image with its boxes, the per-phrase attention maps with and without guidance, the energy
at every guidance iteration, and — in "Side by side" — plain SD, layout guidance and GLIGEN for the
same prompt, boxes and seed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

import models
from demos.shared.boxes import Box, draw_boxes, parse_layout, validate_boxes
from demos.shared.comparison import IMAGE, Method, Output
from demos.shared.generation import generator_for, png_with_parameters, resolve_seed
from demos.shared.inputs import number_in_range, prompt_text
from demos.shared.limits import LIMITS
from models import ProgressFn, UserError
from models.pipelines import layout_guidance as lg
from models.stable_diffusion import SD15

MAX_BOXES = 8
PANEL_SIDE = 256


@dataclass
class LayoutGuidanceResult:
    image: Image.Image
    boxed: Image.Image  # the output with the boxes drawn on it
    boxes: list[Box]
    steps: list[lg.StepRecord]  # the guided run, step by step (energies, attention maps)
    plain_image: Image.Image | None  # same seed without guidance (when compared)
    plain_steps: list[lg.StepRecord] | None
    token_groups: list[list[int]]  # prompt token positions steered for each box
    parameters: dict[str, Any]
    seconds: float
    # (position, token) of <|startoftext|> and <|endoftext|>, whose maps each step also records (`token_maps`)
    special_tokens: list[tuple[int, str]] = field(default_factory=list)

    @property
    def plain_parameters(self) -> dict[str, Any]:
        """What reproduces `plain_image`: the same run with guidance off."""
        return {**self.parameters, "loss_scale": 0.0, "forward_strength": 0.0}


START_NOTE = ("The start token `<|startoftext|>` soaks up most of every pixel's attention: each softmax must put its "
              "mass somewhere and this token is always there, so it acts as a sink whatever the picture "
              "(each tile is scaled to its own range: compare shapes, not strengths).")
END_NOTE = ("The end token `<|endoftext|>` (the first padding position) comes after every word of CLIP's causal text "
            "encoder, so it summarises the whole prompt and its map follows the global layout of the scene.")


def special_tokens_of(tokenizer: Any, prompt: str) -> list[tuple[int, str]]:
    """(position, token) of the start token and of the end token (the first end/padding position)."""
    ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids
    return [(position, tokenizer.convert_ids_to_tokens(ids[position])) for position in (0, len(ids) - 1)]


def token_groups_for(tokenizer: Any, prompt: str, boxes: list[Box]) -> list[list[int]]:
    """Prompt token positions of each box's phrase, or a `UserError` naming the phrase."""
    try:
        return lg.phrase_token_indices(tokenizer, prompt, [box.phrase for box in boxes])
    except lg.PhraseNotInPrompt as error:
        raise UserError(
            f"The phrase {error.phrase!r} is not in the prompt as written ({error}). Layout guidance steers "
            "the prompt's own words: label each box with words copied from the prompt (repeat a word in the "
            "prompt once per box that uses it)."
        ) from None


def run_layout_guidance(
    prompt: str,
    layout: str,
    steps: int = lg.STEPS,
    guided_steps: int = lg.GUIDED_STEPS,
    iterations: int = lg.ITERATIONS,
    loss_scale: float = lg.LOSS_SCALE,
    loss_threshold: float = lg.LOSS_THRESHOLD,
    guidance_scale: float = lg.CFG_SCALE,
    seed: int = lg.SEED,
    randomize: bool = False,
    compare_unguided: bool = True,
    forward_strength: float = 0.0,
    progress: ProgressFn | None = None,
) -> LayoutGuidanceResult:
    """Generate with layout guidance over the shared SD-1.5 base (and, to compare, without)."""
    prompt = prompt_text(prompt, "the objects in your boxes")
    boxes = validate_boxes(parse_layout(layout), MAX_BOXES)
    steps = number_in_range(steps, "Steps", 1, LIMITS.max_steps, whole=True)
    # More guided steps than steps: every step is guided.
    guided_steps = number_in_range(guided_steps, "Guided steps", 0, LIMITS.max_steps, whole=True)
    iterations = number_in_range(iterations, "Iterations per guided step", 1, 20, whole=True)
    loss_scale = number_in_range(loss_scale, "The loss scale", 0, 1000)
    guidance_scale = number_in_range(guidance_scale, "The CFG scale", 1, 30)
    forward_strength = number_in_range(forward_strength, "The forward-guidance strength λ", 0, 1)
    seed = resolve_seed(seed, randomize)
    base = models.get(SD15, progress)
    token_groups = token_groups_for(base.tokenizer, prompt, boxes)
    special = special_tokens_of(base.tokenizer, prompt)
    box_groups = [[box.xyxy] for box in boxes]
    started = time.perf_counter()
    runs = [("layout guidance", loss_scale, forward_strength)]
    runs += [("plain SD", 0.0, 0.0)] if compare_unguided else []
    outputs = []
    for run_index, (what, scale, strength) in enumerate(runs):
        def on_step(index: int, what=what, run_index=run_index) -> None:
            if progress is not None:
                progress((run_index * steps + index + 1) / (len(runs) * steps), desc=f"{what}: step {index + 1}/{steps}")
        outputs.append(lg.generate_with_layout_guidance(
            lg.lms_pipeline(base), prompt, token_groups, box_groups, generator_for(seed, base.device),
            steps=steps, guided_steps=guided_steps, iterations=iterations, loss_scale=scale,
            loss_threshold=float(loss_threshold), guidance_scale=guidance_scale, forward_strength=strength,
            on_step=on_step, token_maps_of=[position for position, _ in special]))
    parameters = dict(method="layout guidance (Chen et al.)", model=SD15, prompt=prompt,
                      boxes=[[box.phrase, *box.xyxy] for box in boxes], steps=steps, guided_steps=guided_steps,
                      iterations=iterations, loss_scale=loss_scale, loss_threshold=float(loss_threshold),
                      guidance_scale=guidance_scale, forward_strength=forward_strength,
                      scheduler="LMSDiscreteScheduler", seed=seed)
    guided = outputs[0]
    plain = outputs[1] if compare_unguided else None
    return LayoutGuidanceResult(
        image=guided.image,
        boxed=draw_boxes(guided.image, boxes),
        boxes=boxes,
        steps=guided.steps,
        plain_image=plain.image if plain else None,
        plain_steps=plain.steps if plain else None,
        token_groups=token_groups,
        parameters=parameters,
        seconds=time.perf_counter() - started,
        special_tokens=special,
    )


# ---- mechanism views ---------------------------------------------------------------------------

@dataclass
class ShownMap:
    """One panel of the attention views: whose map, from which prompt token positions, and its box."""

    label: str
    tokens: list[int]
    heat: np.ndarray  # [h, w]
    box: Box | None  # the phrase's box; None for the start and end tokens


def shown_maps(result: LayoutGuidanceResult, records: list[lg.StepRecord], index: int,
               special: bool = False) -> list[ShownMap]:
    """The maps shown at step `index` (0-based) of `records`: one per phrase, and with `special` the start
    token's before them and the end token's after them."""
    record = records[index]
    shown = [ShownMap(box.phrase, list(tokens), heat, box)
             for box, tokens, heat in zip(result.boxes, result.token_groups, record.phrase_maps)]
    if special and record.token_maps is not None:
        (start, start_label), (end, end_label) = result.special_tokens
        shown = [ShownMap(start_label, [start], record.token_maps[0], None), *shown,
                 ShownMap(end_label, [end], record.token_maps[1], None)]
    return shown


def map_panels(image: Image.Image, shown: list[ShownMap], boxes: list[Box], title: str) -> Image.Image:
    """One panel per map: its attention (normalised, jet) over the image, with its box (a start or end
    token's panel: every box, thin)."""
    import matplotlib

    picture = image.convert("RGB").resize((PANEL_SIDE, PANEL_SIDE))
    colormap = matplotlib.colormaps["jet"]
    strip = Image.new("RGB", (PANEL_SIDE * len(shown), PANEL_SIDE + 22), "white")
    for index, entry in enumerate(shown):
        heat = (entry.heat - entry.heat.min()) / (entry.heat.max() - entry.heat.min() + 1e-12)
        colored = Image.fromarray((colormap(heat)[..., :3] * 255).astype(np.uint8)).resize(
            (PANEL_SIDE, PANEL_SIDE), Image.Resampling.BILINEAR)
        blended = Image.blend(picture, colored, 0.6)
        panel = draw_boxes(blended, [entry.box]) if entry.box is not None else draw_boxes(blended, boxes, width=1)
        strip.paste(panel, (index * PANEL_SIDE, 22))
        ImageDraw.Draw(strip).text((index * PANEL_SIDE + 4, 4), f"{title}: {entry.label}",
                                   fill="black" if entry.box is not None else "#a00000")
    return strip


def attention_panels(image: Image.Image, maps: np.ndarray, boxes: list[Box], title: str) -> Image.Image:
    """One panel per phrase: its cross-attention (normalised, jet) over the image, with its box."""
    return map_panels(image, [ShownMap(box.phrase, [], heat, box) for box, heat in zip(boxes, maps)], boxes, title)


def attention_views(result: LayoutGuidanceResult, step: int,
                    special: bool = False) -> tuple[Image.Image, Image.Image | None]:
    """The maps at denoising step `step` (1-based) with guidance and without; with `special`, the start
    and end tokens' beside the phrases'."""
    index = min(max(int(step), 1), len(result.steps)) - 1
    guided = map_panels(result.image, shown_maps(result, result.steps, index, special), result.boxes,
                        f"guided, step {index + 1}")
    plain = None
    if result.plain_steps is not None:
        plain = map_panels(result.plain_image, shown_maps(result, result.plain_steps, index, special), result.boxes,
                           f"no guidance, step {index + 1}")
    return guided, plain


def energy_figure(result: LayoutGuidanceResult):
    """Left: the energy before every guidance update (steps separated). Right: the share of the
    phrases' attention inside their boxes at each step, with and without guidance."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.2), layout="constrained")
    left, right = figure.subplots(1, 2)
    position = 0
    for record in result.steps:
        if not record.energies:
            continue
        xs = list(range(position, position + len(record.energies) + 1))
        left.plot(xs, record.energies + [record.energy_after], marker="o", markersize=3,
                  label=f"step {record.index + 1}" if record.index < 3 else None)
        position = xs[-1] + 1
    left.set_xlabel("guidance iteration (a gap = next step; last point = after the update)")
    left.set_ylabel("energy E (without the loss scale)")
    left.set_title("Energy during guidance")
    if position:
        left.legend(fontsize=7)
    steps = [record.index + 1 for record in result.steps]
    right.plot(steps, [r.inside_after for r in result.steps], label="layout guidance")
    if result.plain_steps is not None:
        right.plot(steps, [r.inside_after for r in result.plain_steps], label="no guidance", linestyle="--")
    right.axvspan(0.5, min(result.parameters["guided_steps"], len(steps)) + 0.5, color="orange", alpha=0.15, label="guided steps")
    right.set_xlabel("denoising step")
    right.set_ylabel("attention share inside boxes")
    right.set_title("Phrase attention inside its box")
    right.legend(fontsize=7)
    return figure


def summary(result: LayoutGuidanceResult) -> str:
    guided = [r for r in result.steps if r.energies]
    lines = [f"**seed {result.parameters['seed']}** · {result.seconds:.1f} s · "
             f"{sum(len(r.energies) for r in guided)} guidance passes over {len(guided)} steps"]
    for box, tokens in zip(result.boxes, result.token_groups):
        lines.append(f"- `{box.phrase}` → prompt tokens {tokens}")
    final = result.steps[-1].inside_after
    if result.plain_steps is not None:
        lines.append(f"\nAttention inside the boxes at the last step: {final:.3f} with guidance, "
                     f"{result.plain_steps[-1].inside_after:.3f} without.")
    return "\n".join(lines)


def _compare_layout_guidance(prompt: str, boxes: str, seed: int = lg.SEED, steps: int = lg.STEPS,
                             guidance_scale: float = lg.CFG_SCALE, **_unused: Any) -> Output:
    """A Compare cell: this tab's own run, without the unguided twin."""
    result = run_layout_guidance(prompt, boxes, steps=steps, guidance_scale=guidance_scale, seed=seed,
                                 compare_unguided=False)
    return Output(image=result.image)


COMPARE_METHODS = [Method(IMAGE, "Layout guidance (Chen et al.)", _compare_layout_guidance,
                          {"seed": lg.SEED, "steps": lg.STEPS, "guidance_scale": lg.CFG_SCALE})]


def layout() -> SimpleNamespace:
    """The tab's widgets, placed; `build_ui` wires them."""
    import gradio as gr

    from demos.shared.boxes import box_editor
    from demos.shared.widgets import MATH, RESULT, seed_controls

    gr.Markdown(
        "Draw boxes and label each with words **from the prompt**. For the first *guided steps* the latent "
        "is nudged (*iterations* gradient steps of size loss scale $\\cdot\\,\\sigma^2$) so that those words' cross-attention "
        "in the mid and first up block of the UNet falls inside their boxes; the rest is plain Stable "
        "Diffusion 1.5 with an LMS scheduler. Defaults are the paper's. Each guided step costs extra "
        "UNet forward+backward passes.", latex_delimiters=MATH
    )
    with gr.Row():
        with gr.Column():
            prompt, boxes = box_editor()
        with gr.Column():
            with gr.Accordion("Guidance settings (paper defaults)", open=False):
                with gr.Row():
                    steps = gr.Slider(1, LIMITS.max_steps, value=lg.STEPS, step=1, label="Steps")
                    guided_steps = gr.Slider(0, LIMITS.max_steps, value=lg.GUIDED_STEPS, step=1, label="Guided steps")
                    iterations = gr.Slider(1, 20, value=lg.ITERATIONS, step=1, label="Iterations per guided step")
                with gr.Row():
                    loss_scale = gr.Slider(0, 100, value=lg.LOSS_SCALE, step=1, label="Loss scale η (0 = off)")
                    threshold = gr.Slider(0, 1, value=lg.LOSS_THRESHOLD, step=0.01, label="Stop below energy")
                    cfg = gr.Slider(1, 20, value=lg.CFG_SCALE, step=0.5, label="CFG scale")
                forward = gr.Slider(0, 1, value=0, step=0.05,
                                    label="Forward guidance λ (the paper's weaker, gradient-free variant; 0 = off)")
                compare = gr.Checkbox(value=True, label="Also run without guidance (same seed) to compare")
            seed, randomize = seed_controls(lg.SEED)
            generate = gr.Button("Generate with layout guidance", variant="primary")
            info = gr.Markdown(elem_id="lg-summary")
    # Full width under the inputs: three results side by side stay readable on a 1280-px projector.
    with gr.Row(elem_id="lg-results"):
        boxed = gr.Image(label="Guided, boxes drawn", format="png", elem_id="lg-boxed", elem_classes=RESULT)
        image = gr.Image(label="Guided (PNG)", type="filepath", format="png", elem_classes=RESULT)
        plain = gr.Image(label="No guidance, same seed", type="filepath", format="png", elem_classes=RESULT)
    map_step = gr.Slider(1, LIMITS.max_steps, value=lg.GUIDED_STEPS, step=1, label="Attention maps at step")
    # Titles above the maps, not the floating label: it would cover the first phrase's caption.
    with gr.Row():
        special = gr.Checkbox(value=True, label="Show start/end tokens", scale=0, min_width=220)
        gr.Markdown(f"{START_NOTE} {END_NOTE}")
    gr.Markdown("**Cross-attention per phrase, with guidance**")
    guided_maps = gr.Image(label="Cross-attention per phrase, with guidance", show_label=False, format="png",
                           elem_id="lg-maps")
    gr.Markdown("**Cross-attention per phrase, without guidance**")
    plain_maps = gr.Image(label="Cross-attention per phrase, without guidance", show_label=False, format="png")
    energy = gr.Plot(label="Energy and attention inside the boxes")
    return SimpleNamespace(
        prompt=prompt, boxes=boxes, steps=steps, guided_steps=guided_steps, iterations=iterations,
        loss_scale=loss_scale, threshold=threshold, cfg=cfg, forward=forward, compare=compare, seed=seed,
        randomize=randomize, generate=generate, info=info, boxed=boxed, image=image, plain=plain, map_step=map_step,
        guided_maps=guided_maps, plain_maps=plain_maps, energy=energy, special=special, state=gr.State())


def build_ui() -> None:
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import scroll_into_view_on

    w = layout()

    @user_errors
    def generate_for_ui(prompt, layout, steps, guided_steps, iterations, loss_scale, loss_threshold, guidance_scale,
                        seed, randomize, compare_unguided, forward_strength, map_step, special,
                        progress=gr.Progress(track_tqdm=True)):
        result = run_layout_guidance(prompt, layout, steps, guided_steps, iterations, loss_scale, loss_threshold,
                                     guidance_scale, seed, randomize, compare_unguided, forward_strength, progress)
        guided_view, plain_view = attention_views(result, map_step, special)
        plain_png = (png_with_parameters(result.plain_image, result.plain_parameters, "plain-sd")
                     if compare_unguided else None)
        return (result.boxed, png_with_parameters(result.image, result.parameters, "layout-guidance"), plain_png,
                summary(result), guided_view, plain_view, energy_figure(result), result.parameters["seed"], result)

    @user_errors
    def maps_at(result, step, special):
        if result is None:
            return None, None
        return attention_views(result, step, special)

    w.generate.click(generate_for_ui,
                     inputs=[w.prompt, w.boxes, w.steps, w.guided_steps, w.iterations, w.loss_scale, w.threshold, w.cfg,
                             w.seed, w.randomize, w.compare, w.forward, w.map_step, w.special],
                     outputs=[w.boxed, w.image, w.plain, w.info, w.guided_maps, w.plain_maps, w.energy, w.seed,
                              w.state],
                     api_name="layout_guidance")
    scroll_into_view_on(w.generate, "lg-results")
    gr.on([w.map_step.release, w.special.change], maps_at, inputs=[w.state, w.map_step, w.special],
          outputs=[w.guided_maps, w.plain_maps], api_visibility="private")
