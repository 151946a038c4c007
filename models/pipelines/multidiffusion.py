"""MultiDiffusion (Bar-Tal, Yariv, Lipman, Dekel, ICML 2023): many diffusion paths fused into one image.

Every step, each window F_i of the shared latent J_t gets one ordinary step Φ of a pretrained model
(classifier-free guidance + `scheduler.step`), once per prompt. The next latent is the per-pixel
least-squares solution of Σ_i ‖W_i ⊙ (F_i(J) − Φ(F_i(J_t)))‖²:

    J_{t-1} = Σ_i F_i⁻¹(W_i ⊙ Φ_i) / Σ_i F_i⁻¹(W_i)

(`fuse`). A panorama is one prompt with W_i = 1 over overlapping windows; region prompts are one
prompt per mask with W = the mask, and for the first "bootstrapping" steps every foreground view
sees a random constant-colour background outside its mask, so its object forms inside the mask
(the paper's region_based.py). Same scheduler (DDIM, η = 0), same noise and one window covering the
whole latent reduce to the plain Stable Diffusion pipeline.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..safety import screened_images

Window = tuple[int, int, int, int]  # h0, h1, w0, w1 in latent pixels; with circular padding w1 may pass the width
WINDOW_STRIDE = 8  # latent pixels, the paper's default
BOOTSTRAP_FRACTION = 0.4  # region_based.py: 20 of 50 steps
BACKGROUNDS = 20  # random constant colours to draw the bootstrapping backgrounds from
GUIDANCE_SCALE = 7.5
STEPS = 50


def windows(height: int, width: int, window: int, stride: int, circular: bool = False) -> list[Window]:
    """The paper's grid of views over a latent of `height` x `width` (diffusers' `get_views`, in latent units).

    A side no longer than the window gets one view. With circular padding the columns start every
    `stride` pixels all the way round, and the views past the right edge wrap to the left."""
    rows = (height - window) // stride + 1 if height > window else 1
    if circular:
        columns = width // stride if width > window else 1
    else:
        columns = (width - window) // stride + 1 if width > window else 1
    return [(r * stride, r * stride + min(window, height), c * stride, c * stride + min(window, width))
            for r in range(rows) for c in range(columns)]


def coverage(shape: tuple[int, int], views: Sequence[Window]) -> torch.Tensor:
    """How many views cover each latent pixel ([h, w]); a zero means a pixel no view ever updates."""
    count = torch.zeros(1, 1, *shape)
    for view in views:
        _add(count, view, torch.ones(1, 1, view[1] - view[0], view[3] - view[2]))
    return count[0, 0]


def crop(latent: torch.Tensor, view: Window) -> torch.Tensor:
    """F_i: the view's part of the latent, wrapping round the right edge for circular views."""
    h0, h1, w0, w1 = view
    width = latent.shape[-1]
    if w1 <= width:
        return latent[..., h0:h1, w0:w1]
    return torch.cat([latent[..., h0:h1, w0:], latent[..., h0:h1, : w1 - width]], dim=-1)


def _add(total: torch.Tensor, view: Window, values: torch.Tensor) -> None:
    """F_i⁻¹: add a view's values back at its place (in place), wrapping like `crop`."""
    h0, h1, w0, w1 = view
    width = total.shape[-1]
    inside = min(w1, width) - w0
    total[..., h0:h1, w0:w0 + inside] += values[..., :inside]
    if w1 > width:
        total[..., h0:h1, : w1 - width] += values[..., inside:]


def fuse(shape: Sequence[int], contributions: Sequence[tuple[Window, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The MultiDiffusion step: per pixel, the weighted mean Σ W_i Φ_i / Σ W_i of the views covering it.

    `contributions` are (view, Φ_i [P, C, h, w] one per prompt, W_i [P, 1, h, w]); pixels no view
    covers come out as 0 (valid sizes leave none)."""
    value = torch.zeros(*shape, dtype=contributions[0][1].dtype, device=contributions[0][1].device)
    count = torch.zeros_like(value)
    for view, values, weights in contributions:
        _add(value, view, (values * weights).sum(dim=0, keepdim=True))
        _add(count, view, weights.sum(dim=0, keepdim=True).expand_as(values[:1]))
    return torch.where(count > 0, value / count.clamp(min=1e-12), value)


@dataclass
class MultiDiffusionOutput:
    latent: torch.Tensor  # the final fused latent [1, 4, h, w]
    image: Any  # PIL
    previews: list[tuple[int, Any]] = field(default_factory=list)  # (step, the fused x0 prediction decoded)
    unet_calls: int = 0  # UNet forward passes (each on a CFG batch of 2 x prompts)


def ddim_like(pipe: Any) -> Any:
    """A DDIM scheduler with the pipeline's own training schedule (MultiDiffusion's sampler; η = 0).
    Latents are never clipped to [-1, 1] (the SD pipeline forces `clip_sample` off as well)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False)


def initial_noise(pipe: Any, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """x_T as `StableDiffusionPipeline.prepare_latents` draws it (same seed → same noise)."""
    from diffusers.utils.torch_utils import randn_tensor

    shape = (1, pipe.unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    return randn_tensor(shape, generator=generator, device=pipe.device, dtype=pipe.unet.dtype)


def decode(pipe: Any, latent: torch.Tensor, circular: bool = False) -> Any:
    """Latent → PIL. Wide latents decode in tiles (the shared VAE's tiling is switched back off after);
    a circular panorama is decoded with 8 wrapped latent columns on each side, then cropped, so its
    two ends meet without a seam (as diffusers' panorama pipeline does)."""
    vae = pipe.vae
    pad = 8 if circular else 0
    if pad:
        latent = torch.cat([latent[..., -pad:], latent, latent[..., :pad]], dim=-1)
    tiled = latent.shape[-1] > 2 * pipe.unet.config.sample_size
    if tiled:
        vae.enable_tiling()
    try:
        pixels = vae.decode(latent / vae.config.scaling_factor).sample
    finally:
        if tiled:
            vae.disable_tiling()
    if pad:
        pixels = pixels[..., pad * pipe.vae_scale_factor: -pad * pipe.vae_scale_factor]
    return screened_images(pipe, pixels)[0]


def constant_colour_latents(pipe: Any, count: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """region_based.py's bootstrapping backgrounds: `count` random constant-colour images, VAE-encoded."""
    colours = torch.rand(count, 3, 1, 1, generator=generator, device=generator.device).to(pipe.device, pipe.vae.dtype)
    images = (2 * colours - 1).expand(count, 3, height, width)
    return pipe.vae.encode(images).latent_dist.mode() * pipe.vae.config.scaling_factor


@torch.no_grad()
def generate(
    pipe: Any,
    prompts: Sequence[str],
    masks: torch.Tensor,
    views: Sequence[Window],
    noise: torch.Tensor,
    generator: torch.Generator,
    steps: int = STEPS,
    guidance_scale: float = GUIDANCE_SCALE,
    negative_prompt: str = "",
    bootstrap_steps: int = 0,
    circular: bool = False,
    preview_steps: Sequence[int] = (),
    on_step: Callable[[int], None] | None = None,
) -> MultiDiffusionOutput:
    """MultiDiffusion over `views` of the latent `noise` (x_T), one prompt per mask ([P, 1, h, w], the
    background first); `preview_steps` (0-based) decode the fused x0 prediction after those steps."""
    scheduler = ddim_like(pipe)
    scheduler.set_timesteps(steps, device=pipe.device)
    count = len(prompts)
    positive, negative = pipe.encode_prompt(list(prompts), pipe.device, 1, True, [negative_prompt] * count)
    embeddings = torch.cat([negative, positive])
    masks = masks.to(pipe.device, noise.dtype)
    latent = noise * scheduler.init_noise_sigma
    if bootstrap_steps and count > 1:
        h0, h1, w0, w1 = views[0]  # every view has the same size
        side = pipe.vae_scale_factor
        backgrounds = constant_colour_latents(pipe, BACKGROUNDS, (h1 - h0) * side, (w1 - w0) * side, generator)
    output = MultiDiffusionOutput(latent=latent, image=None)
    for index, t in enumerate(scheduler.timesteps):
        steps_out, x0_out = [], []
        for view in views:
            view_latent = crop(latent, view).repeat(count, 1, 1, 1)
            view_masks = crop(masks, view)
            if index < bootstrap_steps and count > 1:
                pick = torch.randint(0, len(backgrounds), (count - 1,), generator=generator,
                                     device=generator.device).to(backgrounds.device)
                background = scheduler.add_noise(backgrounds[pick], crop(noise, view).expand(count - 1, -1, -1, -1), t)
                view_latent[1:] = view_latent[1:] * view_masks[1:] + background * (1 - view_masks[1:])
            model_input = scheduler.scale_model_input(torch.cat([view_latent] * 2), t)
            prediction = pipe.unet(model_input, t, encoder_hidden_states=embeddings).sample
            output.unet_calls += 1
            unconditional, conditional = prediction.chunk(2)
            guided = unconditional + guidance_scale * (conditional - unconditional)
            step = scheduler.step(guided, t, view_latent)
            steps_out.append((view, step.prev_sample, view_masks))
            x0_out.append((view, step.pred_original_sample, view_masks))
        latent = fuse(latent.shape, steps_out)
        if index in preview_steps:
            output.previews.append((index + 1, decode(pipe, fuse(latent.shape, x0_out), circular)))
        if on_step is not None:
            on_step(index)
    output.latent = latent
    output.image = decode(pipe, latent, circular)
    return output
