"""InstructPix2Pix (Brooks, Holynski, Efros, CVPR 2023): edit a photo by an instruction ("make it
snowy"). The UNet sees the noisy latent and the photo's VAE latent side by side (8 input channels)
and is guided twice, in one batch of three:

    ε̃ = ε(z, ∅, ∅) + s_I·(ε(z, c_I, ∅) − ε(z, ∅, ∅)) + s_T·(ε(z, c_I, c_T) − ε(z, c_I, ∅))

The tab shows what each of the three branches predicts as the clean image at the middle step, and
their combination.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image, ImageOps

import models
from demos import ASSETS
from demos.shared.comparison import EDIT, Method, Output
from demos.shared.generation import generator_for, png_with_parameters, resolve_seed
from demos.shared.inputs import number_in_range, prompt_text, rgb_image
from demos.shared.limits import LIMITS
from models import ProgressFn, UserError
from models.instruct_pix2pix import INSTRUCT_PIX2PIX
from models.safety import screened_images

# edit_app.py's defaults (edit_cli.py uses 100 steps and image CFG 1.2)
STEPS = 50
TEXT_CFG = 7.5
IMAGE_CFG = 1.5
MAX_CFG = 30.0
BRANCHES = ("unconditional ε(z, ∅, ∅)", "image only ε(z, c_I, ∅)", "image + text ε(z, c_I, c_T)", "combined ε̃")
FORMULA = (r"$$\tilde\varepsilon = \varepsilon(z,\varnothing,\varnothing) + s_I\,[\varepsilon(z,c_I,\varnothing)-"
           r"\varepsilon(z,\varnothing,\varnothing)] + s_T\,[\varepsilon(z,c_I,c_T)-\varepsilon(z,c_I,\varnothing)]$$")
EXAMPLES = [("chelsea.jpg", "turn the cat into a tiger"), ("coffee.jpg", "make it a cup of tea"),
            ("rocket.jpg", "make it snowy")]


@dataclass
class InstructPix2PixResult:
    image: Image.Image
    input: Image.Image  # the photo as the model saw it
    branches: list[tuple[Image.Image, str]]  # predicted clean image of each branch at the middle step
    unet_batch: int  # 3 with guidance, 1 without
    seed: int
    parameters: dict[str, Any]
    seconds: float


def model_input(photo: Image.Image, resolution: int) -> Image.Image:
    """The authors' resize (edit_app.py): long side → `resolution`, the short side rounded up to a
    multiple of 64, both floored to multiples of 64, then cropped to fit."""
    width, height = photo.size
    factor = resolution / max(width, height)
    factor = math.ceil(min(width, height) * factor / 64) * 64 / min(width, height)
    size = (max(64, int((width * factor) // 64) * 64), max(64, int((height * factor) // 64) * 64))
    return ImageOps.fit(photo, size, method=Image.Resampling.LANCZOS)


class BranchSpy:
    """A forward hook on the UNet: the batch size of every call, and at call `step` the input and the
    prediction of each branch (the pipeline's batch is [image + text, image only, unconditional])."""

    def __init__(self, step: int) -> None:
        self.step, self.batches = step, []
        self.sample: torch.Tensor | None = None
        self.noise: torch.Tensor | None = None

    def __call__(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        sample = args[0] if args else kwargs["sample"]
        if len(self.batches) == self.step:
            self.sample, self.noise = sample.detach(), output[0].detach()
        self.batches.append(sample.shape[0])


def branch_views(pipe: Any, spy: BranchSpy, guided: bool, text_cfg: float, image_cfg: float) -> list[tuple[Image.Image, str]]:
    """x0 = z − σ·ε (Euler, ε-prediction) of each branch at the spied step, decoded."""
    sigma = float(pipe.scheduler.sigmas[spy.step])
    latent = spy.sample[:1, :4] * (sigma ** 2 + 1) ** 0.5  # undo scale_model_input
    noises = list(spy.noise)
    if guided:
        text, image, uncond = noises
        noises = [uncond, image, text, uncond + text_cfg * (text - image) + image_cfg * (image - uncond)]
        labels = list(BRANCHES)
    else:
        labels = ["image + text only (guidance off)"]
    with torch.no_grad():
        clean = torch.stack([latent[0] - sigma * noise for noise in noises])
        decoded = pipe.vae.decode(clean / pipe.vae.config.scaling_factor, return_dict=False)[0]
    return list(zip(screened_images(pipe, decoded), labels))


def run_instruct_pix2pix(
    image: Any,
    instruction: str,
    text_cfg: float = TEXT_CFG,
    image_cfg: float = IMAGE_CFG,
    steps: int = STEPS,
    seed: Any = 0,
    randomize: bool = False,
    progress: ProgressFn | None = None,
) -> InstructPix2PixResult:
    """Edit `image` as `instruction` says with StableDiffusionInstructPix2PixPipeline."""
    photo = rgb_image(image, "a photo to edit")
    instruction = prompt_text(instruction, "the edit, as an instruction (e.g. 'make it snowy')")
    # Both ≥ 1: diffusers switches *all* guidance off when the image scale is below 1.
    text_cfg = number_in_range(text_cfg, "The text guidance scale s_T", 1, MAX_CFG)
    image_cfg = number_in_range(image_cfg, "The image guidance scale s_I", 1, MAX_CFG)
    steps = number_in_range(steps, "Steps", 1, LIMITS.max_steps, whole=True)
    seed = resolve_seed(seed, randomize)
    pipe = models.get(INSTRUCT_PIX2PIX, progress)
    resolution = pipe.unet.config.sample_size * pipe.vae_scale_factor
    fitted = model_input(photo, resolution)
    if max(fitted.size) > 2 * resolution:  # the short side is rounded up, so a thin strip gets very long
        raise UserError(f"The photo is too elongated ({photo.width}x{photo.height}); crop it to at most about 2:1.")
    spy = BranchSpy(step=steps // 2)
    hook = pipe.unet.register_forward_hook(spy, with_kwargs=True)

    def on_step(pipeline: Any, index: int, timestep: Any, tensors: dict) -> dict:
        if progress is not None:
            progress((index + 1) / steps, desc=f"step {index + 1}/{steps}")
        return tensors

    started = time.perf_counter()
    try:
        edited = pipe(instruction, image=fitted, num_inference_steps=steps, guidance_scale=text_cfg,
                      image_guidance_scale=image_cfg, generator=generator_for(seed),
                      callback_on_step_end=on_step).images[0]
    finally:
        hook.remove()
    guided = spy.batches[0] == 3
    parameters = dict(method="InstructPix2Pix", checkpoint=models.REGISTRY[INSTRUCT_PIX2PIX].checkpoint,
                      instruction=instruction, text_cfg=text_cfg, image_cfg=image_cfg, steps=steps, seed=seed,
                      scheduler=type(pipe.scheduler).__name__, size=list(fitted.size))
    return InstructPix2PixResult(edited, fitted, branch_views(pipe, spy, guided, text_cfg, image_cfg),
                                 spy.batches[0], seed, parameters, time.perf_counter() - started)


def summary(result: InstructPix2PixResult) -> str:
    p = result.parameters
    guidance = (f"one UNet batch of {result.unet_batch} per step: s_T = {p['text_cfg']:g}, s_I = {p['image_cfg']:g}"
                if result.unet_batch == 3 else
                "text CFG 1: diffusers runs the image + text branch alone (batch of 1), so the image scale is unused")
    return (f"**seed {result.seed}** · {result.seconds:.1f} s · {p['steps']} {p['scheduler']} steps at "
            f"{p['size'][0]}×{p['size'][1]} · {guidance}")


def _compare(image: Any, instruction: str, seed: int = 0, text_cfg: float = TEXT_CFG, image_cfg: float = IMAGE_CFG,
             steps: int = STEPS, **_unused: Any) -> Output:
    """A Compare cell: this tab's run on the shared photo and instruction."""
    return Output(image=run_instruct_pix2pix(image, instruction, text_cfg, image_cfg, steps, seed).image)


# Rows of the paper's figure: image CFG fixed per row; sweep text_cfg for the columns.
COMPARE_METHODS = [Method(EDIT, f"InstructPix2Pix (image CFG {scale:g})", _compare,
                          {"text_cfg": TEXT_CFG, "image_cfg": scale, "steps": STEPS})
                   for scale in (1.0, IMAGE_CFG, 2.0)]


def build_ui() -> None:
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import MATH, RESULT, scroll_into_view_on, seed_controls

    gr.Markdown(
        "Give a photo and an **instruction**. The UNet was fine-tuned on generated (photo, instruction, edited "
        "photo) triplets and takes the photo's VAE latent $c_I$ as 4 extra input channels. Each step runs three "
        f"branches in one batch and combines them:\n\n{FORMULA}\n\nThe text scale $s_T$ pushes toward the "
        "instruction, the image scale $s_I$ toward the input photo: if the edit is too weak, lower $s_I$ or raise $s_T$. "
        "Below the result, each branch's predicted clean image at the middle step.", latex_delimiters=MATH
    )
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Photo", type="pil", image_mode=None, height=300)
            instruction = gr.Textbox(label="Instruction", value="make it snowy", elem_id="ip2p-instruction")
            with gr.Row():
                text_cfg = gr.Slider(1, 15, value=TEXT_CFG, step=0.5, label="Text CFG s_T")
                image_cfg = gr.Slider(1, 5, value=IMAGE_CFG, step=0.1, label="Image CFG s_I")
            steps = gr.Slider(1, LIMITS.max_steps, value=STEPS, step=1, label="Steps (Euler ancestral)")
            seed, randomize = seed_controls()
            run = gr.Button("Edit", variant="primary")
            gr.Examples([[str(ASSETS / name), text] for name, text in EXAMPLES], inputs=[image, instruction],
                        label="Examples (public-domain photos from scikit-image)")
        with gr.Column(elem_id="ip2p-results"):
            slider = gr.ImageSlider(label="Before / after", type="pil", format="png", elem_classes=RESULT)
            download = gr.File(label="Edited image (PNG with parameters)")
            info = gr.Markdown(elem_id="ip2p-info")
    branches = gr.Gallery(label="The three CFG branches at the middle step (predicted clean image) and their "
                                "combination", columns=4, height=260, object_fit="contain", format="png")

    @user_errors
    def edit_for_ui(image, instruction, text_cfg, image_cfg, steps, seed, randomize,
                    progress=gr.Progress(track_tqdm=True)):
        result = run_instruct_pix2pix(image, instruction, text_cfg, image_cfg, steps, seed, randomize, progress)
        png = png_with_parameters(result.image, result.parameters, "instruct-pix2pix")
        return (result.input, result.image), png, summary(result), result.branches, result.seed

    run.click(edit_for_ui, inputs=[image, instruction, text_cfg, image_cfg, steps, seed, randomize],
              outputs=[slider, download, info, branches, seed], api_name="instruct_pix2pix")
    scroll_into_view_on(run, "ip2p-results")
