"""unCLIP (Ramesh et al. 2022, DALL·E 2) with Kandinsky 2.2: caption → prior → CLIP image embedding → decoder.

The decoder never sees the text: it is conditioned on one CLIP image embedding. So an uploaded image's own
embedding gives variations of it, and a path between two embeddings gives an interpolation. The mechanism
panel measures the gap the prior closes: how close the caption's CLIP text embedding, the prior's predicted
image embedding and the true CLIP image embedding of the result are (cosine similarity).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

import models
from demos import ASSETS
from demos.shared.comparison import IMAGE, Method, Output
from demos.shared.generation import generator_for, png_with_parameters, resolve_seed
from demos.shared.inputs import number_in_range, prompt_text, rgb_image
from demos.shared.limits import LIMITS
from models import ProgressFn, UserError
from models.unclip import DECODER, PRIOR, TINY_IMAGE_SIDE

PRIOR_STEPS = 25  # KandinskyV22PriorPipeline's default
MIN_PRIOR_STEPS = 2  # the prior's UnCLIPScheduler spaces its timesteps by (T - 1) / (steps - 1)
GUIDANCE = 4.0  # both pipelines' default
MAX_FRAMES = 9
MODES = ("slerp", "lerp")
TEXT_PRIOR = "caption's text embedding ↔ prior's image embedding"
TEXT_RESULT = "caption's text embedding ↔ result's image embedding"
PRIOR_RESULT = "prior's image embedding ↔ result's image embedding"
EXAMPLE_PROMPTS = ["a red cat, 4k photo", "a lighthouse on a cliff at sunset, oil painting",
                   "a bowl of ramen, studio photo"]


def side() -> int:
    return TINY_IMAGE_SIDE if models.model_settings.profile == "tiny" else 512


def default_decoder_steps() -> int:
    """50 (the pipeline's default is 100; 50 looks the same and takes half the time); 10 for the tiny decoder."""
    return 10 if models.model_settings.profile == "tiny" else 50


@dataclass
class TextResult:
    image: Image.Image
    similarities: dict[str, float]  # cosine between text / prior / result embeddings, by pair name
    prior_seconds: float
    decoder_seconds: float
    parameters: dict[str, Any]


@dataclass
class ImagesResult:
    """Variations or an interpolation strip: images decoded from embeddings, all with one seed per image."""

    images: list[Image.Image]
    captions: list[str]
    parameters: dict[str, Any]
    seconds: float


# ---- embeddings ---------------------------------------------------------------------------------

@torch.no_grad()
def text_embedding(prior: Any, prompt: str) -> torch.Tensor:
    """The caption's CLIP text embedding (the projection the prior is conditioned on), [1, D]."""
    tokens = prior.tokenizer(prompt, padding="max_length", max_length=prior.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")
    return prior.text_encoder(tokens.input_ids.to(prior.device)).text_embeds


@torch.no_grad()
def image_embedding(prior: Any, image: Image.Image) -> torch.Tensor:
    """The CLIP image embedding of a picture, in the space the prior predicts and the decoder reads, [1, D]."""
    pixels = prior.image_processor(image, return_tensors="pt").pixel_values
    return prior.image_encoder(pixels.to(prior.device, prior.image_encoder.dtype)).image_embeds


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.float(), b.float()).item())


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: the angle θ = acos(â·b̂) is a scalar (a dot product, not element-wise)."""
    dot = torch.nn.functional.cosine_similarity(a.float(), b.float()).clamp(-1, 1)
    theta = torch.acos(dot)[:, None]
    if float(theta.abs().max()) < 1e-4:  # (anti)parallel to float precision: the chord is the arc
        return lerp(a, b, t)
    sin = torch.sin(theta)
    return ((torch.sin((1 - t) * theta) / sin) * a.float() + (torch.sin(t * theta) / sin) * b.float()).to(a.dtype)


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Linear interpolation with weights 1 − t and t (summing to 1, unlike `prior.interpolate`'s raw sum)."""
    return (1 - t) * a + t * b


@torch.no_grad()
def decode(decoder: Any, embedding: torch.Tensor, negative: torch.Tensor, seed: int, steps: int,
           guidance_scale: float = GUIDANCE) -> Image.Image:
    """The decoder: an image from a CLIP image embedding alone (plus the negative for guidance) — no text."""
    return decoder(image_embeds=embedding, negative_image_embeds=negative, height=side(), width=side(),
                   num_inference_steps=steps, guidance_scale=guidance_scale,
                   generator=generator_for(seed, decoder.device)).images[0]


def check_steps(steps: Any, what: str, fewest: int = 1) -> int:
    return number_in_range(steps, what, fewest, LIMITS.max_steps, whole=True)


# ---- runs ---------------------------------------------------------------------------------------

def run_unclip(
    prompt: str,
    prior_steps: int = PRIOR_STEPS,
    decoder_steps: int | None = None,
    prior_guidance: float = GUIDANCE,
    decoder_guidance: float = GUIDANCE,
    seed: int = 0,
    randomize: bool = False,
    progress: ProgressFn | None = None,
) -> TextResult:
    """Text → prior → image embedding → decoder, with the cosine similarities along the way."""
    prompt = prompt_text(prompt, "the image")
    prior_steps = check_steps(prior_steps, "Prior steps", MIN_PRIOR_STEPS)
    decoder_steps = check_steps(default_decoder_steps() if decoder_steps is None else decoder_steps, "Decoder steps")
    prior_guidance = number_in_range(prior_guidance, "The prior's guidance scale", 1, 20)
    decoder_guidance = number_in_range(decoder_guidance, "The decoder's guidance scale", 1, 20)
    seed = resolve_seed(seed, randomize)
    prior, decoder = models.get(PRIOR, progress), models.get(DECODER, progress)
    started = time.perf_counter()
    out = prior(prompt, num_inference_steps=prior_steps, guidance_scale=prior_guidance,
                generator=generator_for(seed, prior.device))
    prior_seconds = time.perf_counter() - started
    started = time.perf_counter()
    image = decode(decoder, out.image_embeds, out.negative_image_embeds, seed, decoder_steps, decoder_guidance)
    decoder_seconds = time.perf_counter() - started
    text, predicted, actual = text_embedding(prior, prompt), out.image_embeds, image_embedding(prior, image)
    similarities = {TEXT_PRIOR: cosine(text, predicted), TEXT_RESULT: cosine(text, actual),
                    PRIOR_RESULT: cosine(predicted, actual)}
    parameters = dict(method="unCLIP (Kandinsky 2.2 prior + decoder)", models=[PRIOR, DECODER], prompt=prompt,
                      prior_steps=prior_steps, decoder_steps=decoder_steps, prior_guidance=prior_guidance,
                      decoder_guidance=decoder_guidance, seed=seed)
    return TextResult(image, similarities, prior_seconds, decoder_seconds, parameters)


def run_variations(
    image: Any,
    count: int = 2,
    decoder_steps: int | None = None,
    decoder_guidance: float = GUIDANCE,
    seed: int = 0,
    randomize: bool = False,
    progress: ProgressFn | None = None,
) -> ImagesResult:
    """Variations: the upload's CLIP image embedding decoded with `count` seeds (no prior, no text)."""
    image = rgb_image(image, "an image to make variations of")
    count = number_in_range(count, "The number of variations", 1, LIMITS.max_images_per_run, whole=True)
    decoder_steps = check_steps(default_decoder_steps() if decoder_steps is None else decoder_steps, "Decoder steps")
    decoder_guidance = number_in_range(decoder_guidance, "The decoder's guidance scale", 1, 20)
    seed = resolve_seed(seed, randomize)
    prior, decoder = models.get(PRIOR, progress), models.get(DECODER, progress)
    started = time.perf_counter()
    source = image_embedding(prior, image)
    negative = prior.get_zero_embed(device=prior.device)
    images, captions = [], []
    for index in range(count):
        if progress is not None:
            progress(index / count, desc=f"variation {index + 1}/{count}")
        variation = decode(decoder, source, negative, seed + index, decoder_steps, decoder_guidance)
        images.append(variation)
        captions.append(f"seed {seed + index} · cos to the upload {cosine(source, image_embedding(prior, variation)):.2f}")
    parameters = dict(method="unCLIP variations (Kandinsky 2.2 decoder)", models=[PRIOR, DECODER], count=count,
                      decoder_steps=decoder_steps, decoder_guidance=decoder_guidance, seed=seed)
    return ImagesResult(images, captions, parameters, time.perf_counter() - started)


def run_interpolation(
    image_a: Any,
    image_b: Any = None,
    text_b: str = "",
    frames: int = 5,
    mode: str = "slerp",
    decoder_steps: int | None = None,
    seed: int = 0,
    randomize: bool = False,
    progress: ProgressFn | None = None,
) -> ImagesResult:
    """A strip from image A to image B (or, without B, to the prior's embedding of `text_b`), same seed
    for every frame, so the only thing that changes along the strip is the embedding."""
    image_a = rgb_image(image_a, "a first image (A)")
    if image_b is None and not (text_b or "").strip():
        raise UserError("Please give the other end: a second image (B) or a text for B.")
    image_b = rgb_image(image_b, "a second image (B)") if image_b is not None else None
    text_b = prompt_text(text_b, "end B") if image_b is None else ""
    frames = number_in_range(frames, "Frames", 2, MAX_FRAMES, whole=True)
    if mode not in MODES:
        raise UserError(f"Interpolation must be one of {', '.join(MODES)} (got {mode!r}).")
    decoder_steps = check_steps(default_decoder_steps() if decoder_steps is None else decoder_steps, "Decoder steps")
    seed = resolve_seed(seed, randomize)
    prior, decoder = models.get(PRIOR, progress), models.get(DECODER, progress)
    started = time.perf_counter()
    start = image_embedding(prior, image_a)
    end = image_embedding(prior, image_b) if image_b is not None else prior(
        text_b, num_inference_steps=PRIOR_STEPS, generator=generator_for(seed, prior.device)).image_embeds
    negative = prior.get_zero_embed(device=prior.device)
    mix = slerp if mode == "slerp" else lerp
    images, captions = [], []
    for index in range(frames):
        t = index / (frames - 1)
        if progress is not None:
            progress(index / frames, desc=f"frame {index + 1}/{frames}")
        images.append(decode(decoder, mix(start, end, t), negative, seed, decoder_steps))
        captions.append(f"t = {t:.2f}")
    parameters = dict(method=f"unCLIP interpolation ({mode})", models=[PRIOR, DECODER], frames=frames,
                      text_b=text_b, decoder_steps=decoder_steps, seed=seed,
                      cosine_a_b=cosine(start, end))
    return ImagesResult(images, captions, parameters, time.perf_counter() - started)


def similarity_table(result: TextResult) -> list[list[Any]]:
    return [[pair, round(value, 3)] for pair, value in result.similarities.items()]


def text_summary(result: TextResult) -> str:
    s = result.similarities
    total = result.prior_seconds + result.decoder_seconds
    return (f"**seed {result.parameters['seed']}** · prior {result.prior_seconds:.1f} s + decoder "
            f"{result.decoder_seconds:.1f} s = {total:.1f} s\n\nThe decoder only reads an image embedding. The "
            f"caption's text embedding is {s[TEXT_RESULT]:.2f} similar to the result's image "
            f"embedding; the prior's predicted image embedding is {s[PRIOR_RESULT]:.2f} "
            "similar: the gap between the two is what the prior closes.")


# ---- Compare ------------------------------------------------------------------------------------

def _compare_unclip(prompt: str, seed: int = 0, steps: int | None = None, **_unused: Any) -> Output:
    return Output(image=run_unclip(prompt, decoder_steps=steps, seed=seed).image)


COMPARE_METHODS = [Method(IMAGE, "unCLIP (Kandinsky 2.2)", _compare_unclip,
                          {"seed": 0, "steps": default_decoder_steps()})]


# ---- UI -----------------------------------------------------------------------------------------

def build_ui() -> None:
    import gradio as gr

    gr.Markdown(
        "unCLIP in two stages: a **prior** maps the caption to a CLIP **image** embedding, and a **decoder** "
        "paints an image from that embedding alone — it never sees the text. Kandinsky 2.2 (prior: CLIP ViT-bigG "
        "image embeddings, 1280-d; decoder: a UNet on MoVQ latents). Since the decoder reads an image embedding, "
        "an upload's own embedding gives **variations**, and a path between two embeddings an **interpolation**."
    )
    with gr.Tabs():
        with gr.Tab("Text → image"):
            _text_to_image_tab()
        with gr.Tab("Variations"):
            _variations_tab()
        with gr.Tab("Interpolation"):
            _interpolation_tab()


def _text_to_image_tab() -> None:
    """The whole pipeline from a caption, with the cosine similarities that show what the prior does."""
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import RESULT, scroll_into_view_on, seed_controls

    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(label="Prompt", value=EXAMPLE_PROMPTS[0], lines=2)
            gr.Examples([[p] for p in EXAMPLE_PROMPTS], inputs=[prompt], label="Example prompts")
            with gr.Row():
                prior_steps = gr.Slider(MIN_PRIOR_STEPS, LIMITS.max_steps, value=PRIOR_STEPS, step=1,
                                        label="Prior steps")
                decoder_steps = gr.Slider(1, LIMITS.max_steps, value=default_decoder_steps(), step=1,
                                          label="Decoder steps")
            with gr.Row():
                prior_guidance = gr.Slider(1, 20, value=GUIDANCE, step=0.5, label="Prior guidance")
                decoder_guidance = gr.Slider(1, 20, value=GUIDANCE, step=0.5, label="Decoder guidance")
            seed, randomize = seed_controls(0)
            generate = gr.Button("Generate (prior → decoder)", variant="primary")
        with gr.Column(elem_id="unclip-results"):
            image = gr.Image(label="unCLIP result (PNG)", type="filepath", format="png", elem_id="unclip-image",
                             elem_classes=RESULT)
            info = gr.Markdown()
            table = gr.Dataframe(headers=["embeddings compared", "cosine similarity"], interactive=False,
                                 label="The gap the prior closes")

    @user_errors
    def text_for_ui(prompt, prior_steps, decoder_steps, prior_guidance, decoder_guidance, seed, randomize,
                    progress=gr.Progress()):
        result = run_unclip(prompt, prior_steps, decoder_steps, prior_guidance, decoder_guidance, seed, randomize,
                            progress)
        return (png_with_parameters(result.image, result.parameters, "unclip"), text_summary(result),
                similarity_table(result), result.parameters["seed"])

    generate.click(text_for_ui, inputs=[prompt, prior_steps, decoder_steps, prior_guidance, decoder_guidance,
                                        seed, randomize],
                   outputs=[image, info, table, seed], api_name="unclip_text")
    scroll_into_view_on(generate, "unclip-results")


def _variations_tab() -> None:
    """The decoder alone on an upload's own embedding: no prior, no text, only other seeds."""
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import scroll_into_view_on, seed_controls

    with gr.Row():
        with gr.Column():
            source = gr.Image(label="Image to vary", type="pil", value=str(ASSETS / "chelsea.jpg"), height=300)
            gr.Examples([[str(ASSETS / n)] for n in ("chelsea.jpg", "coffee.jpg", "rocket.jpg")], inputs=source,
                        label="Example images")
            with gr.Row():
                count = gr.Slider(1, LIMITS.max_images_per_run, value=2, step=1, label="Variations")
                steps = gr.Slider(1, LIMITS.max_steps, value=default_decoder_steps(), step=1, label="Decoder steps")
                guidance = gr.Slider(1, 20, value=GUIDANCE, step=0.5, label="Decoder guidance")
            seed, randomize = seed_controls(0)
            vary = gr.Button("Make variations", variant="primary")
        with gr.Column(elem_id="unclip-variation-results"):
            variations = gr.Gallery(label="Variations (its CLIP image embedding, decoded with other seeds)",
                                    columns=2, format="png", elem_id="unclip-variations")
            info = gr.Markdown(elem_id="unclip-variation-info")

    @user_errors
    def variations_for_ui(image, count, steps, guidance, seed, randomize, progress=gr.Progress()):
        result = run_variations(image, count, steps, guidance, seed, randomize, progress)
        return (list(zip(result.images, result.captions)),
                f"**seed {result.parameters['seed']}** · {result.seconds:.1f} s · no prior, no text",
                result.parameters["seed"])

    vary.click(variations_for_ui, inputs=[source, count, steps, guidance, seed, randomize],
               outputs=[variations, info, seed], api_name="unclip_variations")
    scroll_into_view_on(vary, "unclip-variation-results")


def _interpolation_tab() -> None:
    """A strip between two embeddings decoded with one seed, and a slider to look at one frame of it."""
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import seed_controls

    with gr.Row():
        image_a = gr.Image(label="A", type="pil", value=str(ASSETS / "chelsea.jpg"), height=240)
        image_b = gr.Image(label="B (or clear it and give a text)", type="pil", value=str(ASSETS / "coffee.jpg"),
                           height=240)
        with gr.Column():
            text_b = gr.Textbox(label="Text for B (used when B has no image)", value="")
            with gr.Row():
                frames = gr.Slider(2, MAX_FRAMES, value=5, step=1, label="Frames")
                mode = gr.Radio(list(MODES), value="slerp", label="Path")
            steps = gr.Slider(1, LIMITS.max_steps, value=default_decoder_steps(), step=1, label="Decoder steps")
            seed, randomize = seed_controls(0)
            interpolate = gr.Button("Interpolate", variant="primary")
    strip = gr.Gallery(label="A → B (one seed; only the embedding moves)", columns=MAX_FRAMES, format="png",
                       elem_id="unclip-strip", height=260)
    pick = gr.Slider(0, 1, value=0.5, step=0.01, label="Show the frame nearest to t")
    frame = gr.Image(label="Frame", format="png", height=300)
    info = gr.Markdown()
    frames_state = gr.State()

    @user_errors
    def interpolation_for_ui(image_a, image_b, text_b, frames, mode, steps, seed, randomize, pick,
                             progress=gr.Progress()):
        result = run_interpolation(image_a, image_b, text_b, frames, mode, steps, seed, randomize, progress)
        info = (f"**seed {result.parameters['seed']}** · {result.seconds:.1f} s · cosine(A, B) = "
                f"{result.parameters['cosine_a_b']:.2f}")
        return (list(zip(result.images, result.captions)), nearest_frame(result.images, pick), info,
                result.parameters["seed"], result.images)

    @user_errors
    def frame_at(images, t):
        return nearest_frame(images, t) if images else None

    interpolate.click(interpolation_for_ui,
                      inputs=[image_a, image_b, text_b, frames, mode, steps, seed, randomize, pick],
                      outputs=[strip, frame, info, seed, frames_state], api_name="unclip_interpolation")
    pick.release(frame_at, inputs=[frames_state, pick], outputs=frame, api_visibility="private")


def nearest_frame(images: list[Image.Image], t: Any) -> Image.Image:
    """The strip's frame closest to `t` in [0, 1]."""
    t = number_in_range(t, "t", 0, 1)
    return images[round(t * (len(images) - 1))]
