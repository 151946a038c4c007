"""Prompt-to-Prompt (Hertz et al. 2022) with null-text inversion (Mokady et al., CVPR 2023): edit an
image by editing its prompt. The source and the edited prompt are denoised together from one x_T, and
for the first steps the edit re-uses the source's cross-attention maps (and self-attention), so the
layout stays while the words change. A real photo is first inverted: DDIM inversion gives x_T, and
per-step optimised unconditional ("null-text") embeddings make the source prompt reproduce it.

The controller is in models/pipelines/prompt_to_prompt.py, the inversion in
models/pipelines/null_text_inversion.py; both run on the shared SD-1.5 base, whose attention
processors are swapped for the run and put back after.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

import models
from demos import ASSETS
from demos.shared.comparison import EDIT, Method, Output
from demos.shared.generation import generator_for, png_with_parameters, resolve_seed
from demos.shared.inputs import number_in_range, prompt_text, rgb_image
from demos.shared.limits import LIMITS
from models import ProgressFn, UserError
from models.pipelines import null_text_inversion as nti
from models.pipelines import prompt_to_prompt as p2p
from models.stable_diffusion import SD15

MAX_PROMPT_CHARS = 300
MAX_TOKENS_SHOWN = 12
TILE = 96
EDIT_LABELS = {"replace": "replace a word", "refine": "refine (add words)", "reweight": "re-weight a word"}
EXAMPLES = [  # photo (or none), source prompt, edited prompt, edit, word, weight
    ("", "a cat riding a bicycle", "a dog riding a bicycle", "replace", "", 2.0),
    ("", "a house in the snow", "a wooden house in the snow", "refine", "", 2.0),
    ("", "a fluffy cat", "a fluffy cat", "reweight", "fluffy", 4.0),
    ("chelsea.jpg", "a cat", "a tiger", "replace", "", 2.0),
]


@dataclass
class PromptToPromptResult:
    source_image: Image.Image  # prompt 0: generated, or the photo's reconstruction
    edited_image: Image.Image
    source_maps: Image.Image  # per-word-token cross-attention of each prompt, over its image
    edited_maps: Image.Image
    inversion: nti.Inversion | None
    parameters: dict[str, Any]
    seconds: float
    token_maps: torch.Tensor | None = None  # [prompts, side, side, 77]: the controller's stored maps
    tokens: list[list[str]] | None = None  # per prompt, its tokens from <|startoftext|> to <|endoftext|>


START_NOTE = ("The start token `<|startoftext|>` soaks up most of every pixel's attention: each softmax must put its "
              "mass somewhere and this token is always there, so it acts as a sink whatever the picture "
              "(each tile is scaled to its own range: compare shapes, not strengths).")
END_NOTE = ("The end token `<|endoftext|>` (the first padding position) comes after every word of CLIP's causal text "
            "encoder, so it summarises the whole prompt and its map follows the global layout of the scene.")


def prompt_tokens(tokenizer: Any, prompt: str) -> list[str]:
    """The prompt's tokens as the text encoder reads them: <|startoftext|>, the words' tokens, <|endoftext|>."""
    ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids
    return [tokenizer.convert_ids_to_tokens(token_id).replace("</w>", "") for token_id in ids]


def shown_tokens(tokens: list[str], special: bool = False) -> list[tuple[int, str]]:
    """(token position, label) of each tile: the first words' tokens, and with `special` the start token
    (position 0) before them and the end token (the first end/padding position) after them."""
    words = [(position, tokens[position]) for position in range(1, len(tokens) - 1)][:MAX_TOKENS_SHOWN]
    return [(0, tokens[0]), *words, (len(tokens) - 1, tokens[-1])] if special else words


def token_panels(maps: torch.Tensor, tokens: list[str], image: Image.Image, title: str,
                 special: bool = False) -> Image.Image:
    """One tile per shown token (`shown_tokens`): its attention over the image, normalised per tile."""
    import matplotlib

    shown = shown_tokens(tokens, special)
    colormap = matplotlib.colormaps["jet"]
    picture = image.convert("RGB").resize((TILE, TILE))
    strip = Image.new("RGB", (TILE * max(len(shown), 1), TILE + 36), "white")
    draw = ImageDraw.Draw(strip)
    draw.text((4, 2), title, fill="black")
    for index, (position, label) in enumerate(shown):
        heat = maps[..., position].numpy()
        heat = (heat - heat.min()) / (heat.max() - heat.min() + 1e-12)
        colored = Image.fromarray((colormap(heat)[..., :3] * 255).astype(np.uint8)).resize(
            (TILE, TILE), Image.Resampling.BILINEAR)
        strip.paste(Image.blend(picture, colored, 0.6), (index * TILE, 36))
        is_word = 0 < position < len(tokens) - 1
        draw.text((index * TILE + 4, 20), label, fill="black" if is_word else "#a00000")
    return strip


def map_views(result: PromptToPromptResult, special: bool) -> tuple[Image.Image, Image.Image]:
    """The source's and the edit's token strips, with or without the start and end tokens."""
    p = result.parameters
    return tuple(token_panels(result.token_maps[index], result.tokens[index], image, title, special)
                 for index, (image, title) in enumerate([(result.source_image, f"source: {p['source_prompt']}"),
                                                         (result.edited_image, f"edit: {p['edited_prompt']}")]))


def run_prompt_to_prompt(
    source_prompt: str,
    edited_prompt: str,
    edit: str = "replace",
    photo: Any = None,
    word: str = "",
    weight: float = 2.0,
    cross_replace_steps: float = p2p.CROSS_REPLACE_STEPS,
    self_replace_steps: float = p2p.SELF_REPLACE_STEPS,
    steps: int = p2p.STEPS,
    guidance_scale: float = p2p.GUIDANCE_SCALE,
    seed: Any = 0,
    randomize: bool = False,
    inner_steps: int = nti.INNER_STEPS,
    progress: ProgressFn | None = None,
) -> PromptToPromptResult:
    """Generate (or, given a photo, null-text-invert) the source prompt and its edit in one batch."""
    source_prompt = prompt_text(source_prompt, "the picture (or the photo)", MAX_PROMPT_CHARS)
    edited_prompt = prompt_text(edited_prompt, "the picture after the edit", MAX_PROMPT_CHARS)
    if edit not in p2p.EDITS:
        raise UserError(f"Choose the edit as one of {', '.join(p2p.EDITS)}.")
    picture = None if photo is None else rgb_image(photo, "a photo to invert")
    weight = number_in_range(weight, "The re-weight factor", -10, 10)
    cross_replace_steps = number_in_range(cross_replace_steps, "Cross-attention replace steps", 0, 1)
    self_replace_steps = number_in_range(self_replace_steps, "Self-attention replace steps", 0, 1)
    steps = number_in_range(steps, "Steps", 1, LIMITS.max_steps, whole=True)
    guidance_scale = number_in_range(guidance_scale, "The CFG scale", 1, 30)
    inner_steps = number_in_range(inner_steps, "Adam iterations per step", 0, 50, whole=True)
    seed = resolve_seed(seed, randomize)
    base = models.get(SD15, progress)
    try:
        cross = p2p.cross_edit(base.tokenizer, edit, source_prompt, edited_prompt, (word or "").strip(), weight)
    except p2p.EditError as error:
        raise UserError(str(error)) from None

    started = time.perf_counter()
    schedule = p2p.DDIMSchedule.for_scheduler(base.scheduler.config, steps)
    side = base.unet.config.sample_size
    inversion = None
    if picture is not None:
        def on_inversion_step(phase: str, index: int, total: int) -> None:
            if progress is not None:
                progress((index + 1) / total, desc=f"{phase}: step {index + 1}/{total}")

        inversion = nti.invert(base, picture, source_prompt, steps, guidance_scale, inner_steps, on_inversion_step)
        x_t = inversion.x_t
    else:
        x_t = torch.randn((1, base.unet.config.in_channels, side, side), generator=generator_for(seed),
                          dtype=torch.float32).to(base.device)

    def on_step(index: int) -> None:
        if progress is not None:
            progress((index + 1) / steps, desc=f"prompt-to-prompt: step {index + 1}/{steps}")

    controller = p2p.AttentionController(2, steps, side * side, cross, cross_replace_steps, self_replace_steps)
    output = p2p.sample(base, [source_prompt, edited_prompt], x_t, schedule, guidance_scale,
                        inversion.null_embeddings if inversion else None, controller, on_step)
    maps = controller.token_maps().cpu()
    source_image, edited_image = output.images
    parameters = dict(method="prompt-to-prompt" + (" + null-text inversion" if inversion else ""), model=SD15,
                      source_prompt=source_prompt, edited_prompt=edited_prompt, edit=edit,
                      word=word if edit == "reweight" else "", weight=weight if edit == "reweight" else 1.0,
                      cross_replace_steps=cross_replace_steps, self_replace_steps=self_replace_steps, steps=steps,
                      guidance_scale=guidance_scale, scheduler="DDIM (η = 0)",
                      seed=None if inversion else seed, inner_steps=inner_steps if inversion else None)
    tokens = [prompt_tokens(base.tokenizer, prompt) for prompt in (source_prompt, edited_prompt)]
    result = PromptToPromptResult(source_image, edited_image, None, None, inversion, parameters,
                                  time.perf_counter() - started, maps, tokens)
    result.source_maps, result.edited_maps = map_views(result, special=False)
    return result


def summary(result: PromptToPromptResult) -> str:
    p = result.parameters
    origin = "null-text inversion of the photo" if result.inversion else f"seed {p['seed']}"
    lines = [f"**{EDIT_LABELS[p['edit']]}** · {origin} · {result.seconds:.1f} s · {p['steps']} DDIM steps, "
             f"cross-attention replaced for the first {int(p['cross_replace_steps'] * p['steps'])}, "
             f"self-attention for the first {int(p['self_replace_steps'] * p['steps'])}"]
    inversion = result.inversion
    if inversion is not None:
        psnr = inversion.psnr
        lines.append(
            f"\nReconstruction of the photo from the source prompt (PSNR): VAE alone {psnr['VAE round trip']:.2f} dB "
            f"(the bound) · DDIM inversion with the plain ∅ {psnr['DDIM inversion']:.2f} dB · after null-text "
            f"optimisation {psnr['null-text inversion']:.2f} dB. Latent error to z₀: "
            f"{inversion.latent_error['DDIM inversion']:.4f} → {inversion.latent_error['null-text inversion']:.4f}. "
            f"Optimisation: {inversion.iterations} Adam iterations, "
            f"{inversion.unet_calls['null-text optimisation']} UNet passes, "
            f"{inversion.seconds['null-text optimisation']:.1f} s (cached for further edits of this photo).")
    return "\n".join(lines)


def _compare(image: Any, source_prompt: str, edited_prompt: str, seed: int = 0, steps: int = p2p.STEPS,
             cross_replace_steps: float = p2p.CROSS_REPLACE_STEPS, self_replace_steps: float = p2p.SELF_REPLACE_STEPS,
             **_unused: Any) -> Output:
    """A Compare cell: replace when the prompts have as many words, else refine; the photo is inverted."""
    source, edited = (source_prompt or "").split(), (edited_prompt or "").split()
    edit = "replace" if len(source) == len(edited) else "refine"
    result = run_prompt_to_prompt(source_prompt, edited_prompt, edit, image, cross_replace_steps=cross_replace_steps,
                                  self_replace_steps=self_replace_steps, steps=steps, seed=seed)
    return Output(image=result.edited_image)


COMPARE_METHODS = [Method(EDIT, "Prompt-to-prompt + null-text inversion", _compare,
                          {"steps": p2p.STEPS, "cross_replace_steps": p2p.CROSS_REPLACE_STEPS,
                           "self_replace_steps": p2p.SELF_REPLACE_STEPS})]


def layout() -> SimpleNamespace:
    """The tab's widgets, placed; `build_ui` wires them."""
    import gradio as gr

    from demos.shared.widgets import RESULT, seed_controls

    gr.Markdown(
        "Write a prompt, then edit it. Both prompts are denoised together from the same noise; for the first "
        "*cross replace* steps the edit's words attend where the source's words attended (**replace**: a word "
        "swapped for one; **refine**: words added, new words keep their own attention; **re-weight**: one word's "
        "attention scaled), and for the first *self replace* steps the coarse self-attention is copied too — so "
        "the layout stays and only what the words say changes. Upload a photo to edit it instead: it is first "
        "inverted (DDIM inversion, then per-step **null-text optimisation** so the source prompt reproduces it)."
    )
    with gr.Row():
        with gr.Column():
            source = gr.Textbox(label="Source prompt (describes the photo, if any)", value="a cat riding a bicycle",
                                elem_id="p2p-source")
            edited = gr.Textbox(label="Edited prompt", value="a dog riding a bicycle", elem_id="p2p-edited")
            edit = gr.Radio([(label, key) for key, label in EDIT_LABELS.items()], value="replace", label="Edit")
            with gr.Row():
                word = gr.Textbox(label="Word to re-weight (of the edited prompt)")
                weight = gr.Slider(-5, 10, value=2.0, step=0.5, label="Re-weight factor")
            with gr.Row():
                cross = gr.Slider(0, 1, value=p2p.CROSS_REPLACE_STEPS, step=0.05, label="Cross replace steps (fraction)")
                self_steps = gr.Slider(0, 1, value=p2p.SELF_REPLACE_STEPS, step=0.05,
                                       label="Self replace steps (fraction)")
            photo = gr.Image(label="Photo to edit (optional: null-text inversion)", type="pil", image_mode=None,
                             height=220)
            with gr.Accordion("Sampling and inversion settings (the notebooks' defaults)", open=False):
                steps = gr.Slider(1, LIMITS.max_steps, value=p2p.STEPS, step=1, label="DDIM steps")
                guidance = gr.Slider(1, 20, value=p2p.GUIDANCE_SCALE, step=0.5, label="CFG scale")
                inner = gr.Slider(0, 20, value=nti.INNER_STEPS, step=1,
                                  label="Adam iterations per step (null-text optimisation; 0 = plain DDIM inversion)")
            seed, randomize = seed_controls()
            run = gr.Button("Edit the prompt", variant="primary")
        with gr.Column(elem_id="p2p-results"):
            with gr.Row():
                source_image = gr.Image(label="Source", type="filepath", format="png", elem_classes=RESULT)
                edited_image = gr.Image(label="Edited", type="filepath", format="png", elem_classes=RESULT)
            info = gr.Markdown(elem_id="p2p-info")
            reconstructions = gr.Gallery(label="Photo and its reconstructions (null-text inversion only)", columns=4,
                                         height=180, object_fit="contain", format="png")
    gr.Markdown("**Cross-attention per token, source (top) and edit (bottom)** — averaged over heads, steps and the "
                "layers at 1/4 of the latent side; what the UNet used after the edit")
    with gr.Row():
        special = gr.Checkbox(value=True, label="Show start/end tokens", scale=0, min_width=220)
        gr.Markdown(f"{START_NOTE} {END_NOTE}")
    source_maps = gr.Image(label="Source prompt's cross-attention", show_label=False, format="png", elem_id="p2p-maps")
    edited_maps = gr.Image(label="Edited prompt's cross-attention", show_label=False, format="png")
    gr.Examples([[str(ASSETS / name) if name else None, *rest] for name, *rest in EXAMPLES],
                inputs=[photo, source, edited, edit, word, weight], label="Examples")
    return SimpleNamespace(
        source=source, edited=edited, edit=edit, word=word, weight=weight, cross=cross, self_steps=self_steps,
        photo=photo, steps=steps, guidance=guidance, inner=inner, seed=seed, randomize=randomize, run=run,
        source_image=source_image, edited_image=edited_image, info=info, reconstructions=reconstructions,
        source_maps=source_maps, edited_maps=edited_maps, special=special, state=gr.State())


def build_ui() -> None:
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import scroll_into_view_on

    w = layout()

    @user_errors
    def edit_for_ui(source, edited, edit, photo, word, weight, cross, self_steps, steps, guidance, seed, randomize,
                    inner, special, progress=gr.Progress(track_tqdm=True)):
        result = run_prompt_to_prompt(source, edited, edit, photo, word, weight, cross, self_steps, steps, guidance,
                                      seed, randomize, inner, progress)
        p = result.parameters
        gallery = []
        if result.inversion is not None:
            gallery = [(result.inversion.image, "photo (model size)")] + [
                (image, f"{name}: {result.inversion.psnr[name]:.1f} dB")
                for name, image in result.inversion.reconstructions.items()]
        return (png_with_parameters(result.source_image, {**p, "prompt": p["source_prompt"]}, "p2p-source"),
                png_with_parameters(result.edited_image, p, "p2p-edit"), summary(result), gallery,
                *map_views(result, special), p["seed"] if p["seed"] is not None else seed, result)

    @user_errors
    def maps_for_ui(result, special):
        return (None, None) if result is None else map_views(result, special)

    w.run.click(edit_for_ui,
                inputs=[w.source, w.edited, w.edit, w.photo, w.word, w.weight, w.cross, w.self_steps, w.steps,
                        w.guidance, w.seed, w.randomize, w.inner, w.special],
                outputs=[w.source_image, w.edited_image, w.info, w.reconstructions, w.source_maps, w.edited_maps,
                         w.seed, w.state],
                api_name="prompt_to_prompt")
    scroll_into_view_on(w.run, "p2p-results")
    w.special.change(maps_for_ui, inputs=[w.state, w.special], outputs=[w.source_maps, w.edited_maps],
                     api_visibility="private")
