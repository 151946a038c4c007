"""An Imagen-style cascade with DeepFloyd IF: a frozen T5-XXL encodes the prompt once; stage I paints 64×64
pixels from it, stage II paints 256×256 pixels from the same embeddings and the upscaled (noised) stage-I image.
No VAE, no latents: every stage denoises pixels. Beside it, optionally, SD-1.5 (CLIP text, latent diffusion)
with the same prompt and seed.

The IF repositories are gated: without the licence accepted and `HF_TOKEN`, the run stops before any download
with the repository, its size for this device and the three steps to take (the verdict `--check` gives).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

import models
from demos.shared.generation import generator_for, png_with_parameters, resolve_seed
from demos.shared.inputs import number_in_range, prompt_text
from demos.shared.limits import LIMITS
from models import ModelUnavailable, ProgressFn
from models.deepfloyd_if import IF_STAGE_I, IF_STAGE_II, IF_T5
from models.stable_diffusion import SD15

TITLE = "Imagen-style cascade (DeepFloyd IF)"
GUIDANCE = 7.0  # IFPipeline's default; stage II's is 4.0
STAGE_II_GUIDANCE = 4.0
NOISE_LEVEL = 250  # IFSuperResolutionPipeline's default: the noise added to the upscaled stage-I image
CASCADE = (IF_T5, IF_STAGE_I, IF_STAGE_II)
EXAMPLE_PROMPTS = ["a red panda holding a sign that says 'hello'", "a lighthouse on a cliff at sunset, oil painting",
                   "a bowl of ramen, studio photo"]
FORMULAS = r"""**Stage I** learns $p_\theta(x^{64} \mid c)$ with $c = \mathrm{T5}(\text{prompt}) \in \mathbb{R}^{77\times 4096}$,
**stage II** learns $p_\phi(x^{256} \mid \tilde{x}^{64}_{s}, s, c)$: it sees the stage-I image upscaled and noised to
level $s$, $\;\tilde{x}_s = \sqrt{\bar\alpha_s}\,\mathrm{up}(x^{64}) + \sqrt{1-\bar\alpha_s}\,\epsilon$ (noise-conditioning
augmentation), and $s$ itself as a class embedding. Both denoise pixels with classifier-free guidance,
$\hat\epsilon = \epsilon_\theta(x_t,\varnothing) + w\,(\epsilon_\theta(x_t,c) - \epsilon_\theta(x_t,\varnothing))$."""
COMPARISON = (
    "**T5-text pixel cascade (Imagen, IF) vs CLIP-text latent diffusion (SD).** Imagen and IF read the prompt with a "
    "large *text-only* language model (T5-XXL, 4.8B parameters, 77 tokens × 4096) and denoise *pixels*, small "
    "first (64²) and then larger (256², 1024²), each stage conditioned on the one before. Stable Diffusion reads it "
    "with CLIP's text tower (123M, 77 × 768), trained to match images, and denoises a 64² × 4 *latent* that a VAE "
    "decodes to 512². Imagen's finding: a bigger text encoder helps image–text alignment more than a bigger "
    "UNet; IF is much better at spelling words in the picture. The price: the cascade runs several UNets in pixel "
    "space and T5-XXL alone is 19 GB in fp32.")


@dataclass
class CascadeResult:
    stage_i: Image.Image  # 64×64 (the hub model)
    stage_ii: Image.Image  # 256×256
    embedding_shape: tuple[int, ...]  # one prompt's T5 embedding: (77, 4096) on the hub model
    seconds: dict[str, float]  # T5, stage I, stage II (and SD-1.5)
    parameters: dict[str, Any]
    sd_image: Image.Image | None = None  # SD-1.5, same prompt and seed, when asked for


def default_steps() -> tuple[int, int]:
    """(stage I, stage II) steps: few on a CPU (IF-I-M in fp32 takes seconds a step there), the tiny profile's
    fewest, more on a GPU (the pipelines' defaults are 100 and 50)."""
    from models.device import pick_device

    if models.model_cache.settings.profile == "tiny":
        return 4, 2
    return (20, 10) if pick_device().type == "cpu" else (50, 30)


def refuse_gated(names: tuple[str, ...] = CASCADE) -> None:
    """The preflight's verdict on gated models whose files are not here and no token is set: stop with the
    repository, its size and what to do, before anything is fetched."""
    from models.preflight import check

    if models.model_cache.settings.profile != "hub":
        return
    rows = [row for row in check(models.model_cache, list(names)) if row.verdict.startswith("needs HF_TOKEN")]
    repos: dict[str, int] = {}
    for row in rows:
        repo = row.checkpoint.split(" @ ")[0]
        repos[repo] = repos.get(repo, 0) + row.to_download
    if repos:
        named = ", ".join(f"{repo} ({size / 1e9:.2f} GB for this device)" for repo, size in repos.items())
        pages = " and ".join(f"https://huggingface.co/{repo}" for repo in repos)
        raise ModelUnavailable(
            f"{named} is gated. Accept the DeepFloyd IF licence at {pages} (logged in), set HF_TOKEN to a token of "
            f"that account, then fetch it with: python app.py --download --tab \"{TITLE}\"")


@torch.no_grad()
def encode(t5: Any, prompt: str, negative_prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 once: the prompt's and the negative prompt's 77-token embeddings, shared by both stages."""
    embeds, negative = t5.encode_prompt(prompt, do_classifier_free_guidance=True,
                                        negative_prompt=negative_prompt or None, device=t5.device,
                                        clean_caption=False)
    return embeds, negative


def run_if_cascade(
    prompt: str,
    negative_prompt: str = "",
    stage_i_steps: int | None = None,
    stage_ii_steps: int | None = None,
    guidance_scale: float = GUIDANCE,
    noise_level: int = NOISE_LEVEL,
    compare_sd: bool = False,
    seed: int = 0,
    randomize: bool = False,
    progress: ProgressFn | None = None,
) -> CascadeResult:
    """T5 → stage I (64²) → stage II (256²) with one seed; optionally SD-1.5 with the same prompt and seed."""
    prompt = prompt_text(prompt, "the image")
    negative_prompt = (negative_prompt or "").strip()
    if negative_prompt:
        negative_prompt = prompt_text(negative_prompt, "the negative prompt")
    first, second = default_steps()
    stage_i_steps = number_in_range(first if stage_i_steps is None else stage_i_steps, "Stage I steps", 1,
                                    LIMITS.max_steps, whole=True)
    stage_ii_steps = number_in_range(second if stage_ii_steps is None else stage_ii_steps, "Stage II steps", 1,
                                     LIMITS.max_steps, whole=True)
    guidance_scale = number_in_range(guidance_scale, "The guidance scale", 1, 20)
    noise_level = number_in_range(noise_level, "Stage II's noise level", 0, 999, whole=True)
    seed = resolve_seed(seed, randomize)
    refuse_gated(CASCADE + ((SD15,) if compare_sd else ()))
    seconds: dict[str, float] = {}
    embeds, negative = _encode_once(prompt, negative_prompt, seconds, progress)
    # loaded after the encoding: where memory is short the cache may unload T5 (19 GB in fp32) to make room
    stage_i, stage_ii = models.get(IF_STAGE_I, progress), models.get(IF_STAGE_II, progress)
    low, low_image = _stage_i(stage_i, embeds, negative, stage_i_steps, guidance_scale, seed, seconds)
    started = time.perf_counter()
    high = stage_ii(image=low, prompt_embeds=embeds.to(stage_ii.unet.dtype),
                    negative_prompt_embeds=negative.to(stage_ii.unet.dtype), num_inference_steps=stage_ii_steps,
                    guidance_scale=STAGE_II_GUIDANCE, noise_level=noise_level,
                    generator=generator_for(seed, stage_ii.device)).images[0]
    seconds["stage II"] = time.perf_counter() - started
    sd_image = _sd_beside(prompt, negative_prompt, stage_i_steps, seed, seconds, progress) if compare_sd else None
    parameters = dict(method="DeepFloyd IF cascade (stage I M → stage II M)", models=list(CASCADE), prompt=prompt,
                      negative_prompt=negative_prompt, stage_i_steps=stage_i_steps, stage_ii_steps=stage_ii_steps,
                      guidance_scale=guidance_scale, stage_ii_guidance=STAGE_II_GUIDANCE, noise_level=noise_level,
                      compare_sd=bool(compare_sd), seed=seed)
    return CascadeResult(low_image, high, tuple(embeds.shape[1:]), seconds, parameters, sd_image)


def _encode_once(prompt: str, negative_prompt: str, seconds: dict[str, float],
                 progress: ProgressFn | None) -> tuple[torch.Tensor, torch.Tensor]:
    t5 = models.get(IF_T5, progress)
    started = time.perf_counter()
    embeds, negative = encode(t5, prompt, negative_prompt)
    seconds["T5"] = time.perf_counter() - started
    return embeds, negative


def _stage_i(stage_i: Any, embeds: torch.Tensor, negative: torch.Tensor, steps: int, guidance: float, seed: int,
             seconds: dict[str, float]) -> tuple[torch.Tensor, Image.Image]:
    """Stage I from the T5 embeddings: its image as a tensor in [-1, 1] (stage II's input) and as a picture."""
    from diffusers.utils import pt_to_pil

    started = time.perf_counter()
    dtype = stage_i.unet.dtype
    low = stage_i(prompt_embeds=embeds.to(dtype), negative_prompt_embeds=negative.to(dtype),
                  num_inference_steps=steps, guidance_scale=guidance, output_type="pt",
                  generator=generator_for(seed, stage_i.device)).images
    seconds["stage I"] = time.perf_counter() - started
    return low, pt_to_pil(low.float())[0]


def _sd_beside(prompt: str, negative_prompt: str, steps: int, seed: int, seconds: dict[str, float],
               progress: ProgressFn | None) -> Image.Image:
    """SD-1.5 with the same prompt, seed and step count: CLIP text, a 4-channel latent, a VAE decoder."""
    sd = models.get(SD15, progress)
    started = time.perf_counter()
    image = sd(prompt, negative_prompt=negative_prompt or None, num_inference_steps=steps, guidance_scale=GUIDANCE,
               generator=generator_for(seed, sd.device)).images[0]
    seconds["SD-1.5"] = time.perf_counter() - started
    return image


def summary(result: CascadeResult) -> str:
    shape = " × ".join(str(n) for n in result.embedding_shape)
    times = " · ".join(f"{name} {value:.1f} s" for name, value in result.seconds.items())
    low, high = result.stage_i.size, result.stage_ii.size
    return (f"**seed {result.parameters['seed']}** · {times}\n\nT5 prompt embedding: **{shape}** (tokens × width), "
            f"computed once and given to both stages. Stage I: {low[0]}×{low[1]} px; stage II: {high[0]}×{high[1]} "
            f"px ({high[0] // low[0]}× the side), from stage I's image noised to level "
            f"{result.parameters['noise_level']}.")


# ---- UI -----------------------------------------------------------------------------------------

def build_ui() -> None:
    import gradio as gr

    from demos.shared.widgets import MATH

    gr.Markdown("A frozen **T5-XXL** reads the prompt once; **stage I** (IF-I-M, 400M) paints 64×64 pixels from "
                "it, **stage II** (IF-II-M, 450M) paints 256×256 pixels from the same embeddings and stage I's "
                "image. On a CPU the default steps are few (IF-I-M in fp32 takes seconds a step, T5 runs in "
                "bfloat16); the DeepFloyd IF repositories are gated (licence and HF_TOKEN).")
    gr.Markdown(FORMULAS, latex_delimiters=MATH)
    _cascade_panel()
    gr.Markdown(COMPARISON)


def _cascade_panel() -> None:
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import RESULT, scroll_into_view_on, seed_controls

    first, second = default_steps()
    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(label="Prompt", value=EXAMPLE_PROMPTS[0], lines=2)
            gr.Examples([[p] for p in EXAMPLE_PROMPTS], inputs=[prompt], label="Example prompts")
            negative = gr.Textbox(label="Negative prompt", value="")
            with gr.Row():
                steps_i = gr.Slider(1, LIMITS.max_steps, value=first, step=1, label="Stage I steps")
                steps_ii = gr.Slider(1, LIMITS.max_steps, value=second, step=1, label="Stage II steps")
            with gr.Row():
                guidance = gr.Slider(1, 20, value=GUIDANCE, step=0.5, label="Guidance (stage I)")
                noise = gr.Slider(0, 999, value=NOISE_LEVEL, step=1, label="Stage II noise level")
            compare_sd = gr.Checkbox(value=False, label="Also run SD-1.5 with the same prompt and seed (slow on a CPU)")
            seed, randomize = seed_controls(0)
            run = gr.Button("Generate (T5 → stage I → stage II)", variant="primary")
        with gr.Column(elem_id="if-results"):
            with gr.Row():
                low = gr.Image(label="Stage I (64×64)", format="png", elem_classes=RESULT)
                high = gr.Image(label="Stage II (256×256, PNG)", type="filepath", format="png", elem_classes=RESULT)
            sd_image = gr.Image(label="SD-1.5, same prompt and seed", format="png")
            info = gr.Markdown()

    @user_errors
    def cascade_for_ui(prompt, negative, steps_i, steps_ii, guidance, noise, compare_sd, seed, randomize,
                       progress=gr.Progress()):
        result = run_if_cascade(prompt, negative, steps_i, steps_ii, guidance, noise, compare_sd, seed, randomize,
                                progress)
        return (result.stage_i, png_with_parameters(result.stage_ii, result.parameters, "if_cascade"),
                result.sd_image, summary(result), result.parameters["seed"])

    run.click(cascade_for_ui, inputs=[prompt, negative, steps_i, steps_ii, guidance, noise, compare_sd, seed,
                                      randomize],
              outputs=[low, high, sd_image, info, seed], api_name="if_cascade")
    scroll_into_view_on(run, "if-results")
