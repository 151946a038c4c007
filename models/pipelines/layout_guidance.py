"""Training-free layout control with cross-attention guidance (Chen, Laina, Vedaldi, WACV 2024),
backward guidance, as in the authors' repo (silent-chen/layout-guidance) — see ALGORITHMS.md §1.

For the first denoising steps the latent is moved along the gradient of an energy that is low when
each phrase's cross-attention mass lies inside its box:

    E = mean over layers and objects of  mean over the object's tokens of  mean over heads of
        (1 - Σ_{p in box} A[p, token] / Σ_p A[p, token])²
    z ← z - loss_scale · σ_t² · ∇_z E          (LMS scheduler: σ-scaled latents)

Layers read: the mid block's and the first cross-attention up block's `attn2` (8x8 and 16x16 at
512 px). The guidance pass uses the conditional text embedding only; the normal step is CFG.

One deliberate difference from the repo: its loss variable is set to 10000 once per image and the
`while loss/scale > threshold` test reads the value left by the previous step, so once any
iteration gets below the threshold guidance never runs again. Here each guided step starts afresh
(at least one iteration, stop after the iteration whose energy is at or below the threshold), as the
paper describes guidance at every one of the first steps.

Forward guidance (paper only, weaker) is here too: during the guided steps the normal step's
cross-attention of the object tokens is partly moved into a blurred box window
(`forward_guidance_edit`), without gradients.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..safety import screened_images
from ..stable_diffusion import swapped_attention

# Normalised x0, y0, x1, y1 in [0, 1], origin top-left: the coordinates of a `demos.shared.boxes.Box`, which
# also carries the phrase; the sampler steers token positions, so it takes the coordinates alone.
BoxCoordinates = Sequence[float]

# The repo's / paper's defaults (configs of silent-chen/layout-guidance).
LOSS_SCALE = 30.0
GUIDED_STEPS = 10
ITERATIONS = 5
LOSS_THRESHOLD = 0.2
CFG_SCALE = 7.5
STEPS = 50
SEED = 445


class PhraseNotInPrompt(ValueError):
    """A phrase's tokens do not occur in the prompt (or not as often as it has boxes)."""

    def __init__(self, phrase: str, prompt: str, reason: str) -> None:
        super().__init__(f"{phrase!r} {reason} in the prompt {prompt!r}")
        self.phrase = phrase


# ---- phrase → token positions -----------------------------------------------------------------

def _occurrences(sequence: list[int], pattern: list[int]) -> list[int]:
    width = len(pattern)
    return [start for start in range(len(sequence) - width + 1) if sequence[start:start + width] == pattern]


def phrase_token_indices(tokenizer: Any, prompt: str, phrases: Sequence[str]) -> list[list[int]]:
    """Positions in the encoded prompt (0 = <|startoftext|>) of every sub-token of each phrase.

    A phrase is matched as a whole run of BPE tokens, so multi-token words work; the k-th entry of a
    phrase that is listed several times takes the phrase's k-th occurrence in the prompt ("a cat and a
    cat": the first "cat" box steers the first cat). Raises `PhraseNotInPrompt`.
    """
    limit = tokenizer.model_max_length
    prompt_ids = tokenizer(prompt, truncation=True, max_length=limit).input_ids
    used: dict[str, int] = {}
    indices = []
    for phrase in phrases:
        pattern = tokenizer(phrase, add_special_tokens=False).input_ids
        if not pattern:
            raise PhraseNotInPrompt(phrase, prompt, "has no tokens to look for")
        starts = _occurrences(prompt_ids, pattern)
        key = phrase.strip().casefold()
        nth = used.get(key, 0)
        if not starts:
            raise PhraseNotInPrompt(phrase, prompt, f"does not occur (within the first {limit} tokens)")
        if nth >= len(starts):
            raise PhraseNotInPrompt(phrase, prompt, f"is listed {nth + 1} times but occurs {len(starts)} time(s)")
        used[key] = nth + 1
        indices.append(list(range(starts[nth], starts[nth] + len(pattern))))
    return indices


# ---- the energy -------------------------------------------------------------------------------

def box_mask(boxes: Sequence[BoxCoordinates], height: int, width: int, device: Any = "cpu") -> torch.Tensor:
    """Binary HxW mask, the union of the boxes; pixel rows int(y0*H):int(y1*H) as in the repo."""
    mask = torch.zeros(height, width, device=device)
    for x0, y0, x1, y1 in boxes:
        mask[int(y0 * height):int(y1 * height), int(x0 * width):int(x1 * width)] = 1
    return mask


def inside_fraction(probabilities: torch.Tensor, tokens: Sequence[int],
                    boxes: Sequence[BoxCoordinates]) -> torch.Tensor:
    """[heads, tokens]: the share of each token's attention mass that falls inside the boxes.

    `probabilities` is one layer's cross-attention, [heads, HW, text tokens], HW a square."""
    heads, pixels, _ = probabilities.shape
    side = int(round(pixels ** 0.5))
    mask = box_mask(boxes, side, side, probabilities.device).reshape(-1)
    maps = probabilities[:, :, list(tokens)].float()  # [heads, HW, tokens]
    return (maps * mask[None, :, None]).sum(dim=1) / maps.sum(dim=1)


def layout_energy(layer_maps: Sequence[torch.Tensor], token_groups: Sequence[Sequence[int]],
                  box_groups: Sequence[Sequence[BoxCoordinates]]) -> torch.Tensor:
    """The energy L in [0, 1] (before `loss_scale`): 0 when every phrase token attends only inside its
    boxes, 1 when only outside. Per layer and object: mean over the object's tokens of the mean over
    heads of (1 - inside fraction)²; then averaged over layers x objects (the repo's compute_ca_loss)."""
    total = torch.zeros((), device=layer_maps[0].device)
    for probabilities in layer_maps:
        for tokens, boxes in zip(token_groups, box_groups):
            total = total + ((1 - inside_fraction(probabilities, tokens, boxes)) ** 2).mean(dim=0).mean()
    return total / (len(layer_maps) * len(token_groups))


def mean_inside_fraction(layer_maps: Sequence[torch.Tensor], token_groups: Sequence[Sequence[int]],
                         box_groups: Sequence[Sequence[BoxCoordinates]]) -> float:
    """How much of the phrases' attention lies inside their boxes, averaged like the energy."""
    values = [inside_fraction(p, tokens, boxes).mean()
              for p in layer_maps for tokens, boxes in zip(token_groups, box_groups)]
    return float(torch.stack(values).mean())


def forward_guidance_edit(token_groups: Sequence[Sequence[int]], box_groups: Sequence[Sequence[BoxCoordinates]],
                          strength: float, conditional_half: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """Forward guidance (the paper's weaker variant; not in the repo): for each object token i,
    A[:, i] ← (1-λ)·A[:, i] + λ·g·Σ_p A[p, i], with g the object's box mask blurred by a Gaussian
    and normalised to sum 1 — each token keeps its mass, a share λ of it moves into the box. Only the
    conditional half of a CFG batch is edited."""
    from torchvision.transforms.functional import gaussian_blur

    def edit(probabilities: torch.Tensor) -> torch.Tensor:
        side = int(round(probabilities.shape[1] ** 0.5))
        edited = probabilities.clone()
        rows = slice(probabilities.shape[0] // 2 if conditional_half else 0, None)
        for tokens, boxes in zip(token_groups, box_groups):
            window = gaussian_blur(box_mask(boxes, side, side, probabilities.device)[None, None],
                                   kernel_size=2 * (side // 8) + 1, sigma=max(side / 16, 0.5)).reshape(-1)
            window = (window / window.sum()).to(probabilities.dtype)
            for token in tokens:
                column = probabilities[rows, :, token]
                edited[rows, :, token] = (1 - strength) * column + strength * window * column.sum(dim=1, keepdim=True)
        return edited

    return edit


# ---- capturing cross-attention probabilities --------------------------------------------------

def guided_layer_names(unet: Any) -> list[str]:
    """Processor names of the cross-attention layers the energy reads: mid block + up_blocks[1]."""
    return [name for name in unet.attn_processors
            if name.endswith("attn2.processor") and name.startswith(("mid_block.", "up_blocks.1."))]


class AttentionStore:
    """Receives the softmaxed cross-attention of the guided layers while `recording` is set; when
    `edit` is set, the layers use `edit(probabilities)` instead (forward guidance)."""

    def __init__(self) -> None:
        self.recording = False
        self.maps: dict[str, torch.Tensor] = {}
        self.edit: Callable[[torch.Tensor], torch.Tensor] | None = None

    def layer_maps(self, conditional_half: bool) -> list[torch.Tensor]:
        """The captured maps in layer order; with CFG batches keep the conditional half."""
        maps = list(self.maps.values())
        return [m.chunk(2)[1] for m in maps] if conditional_half else maps


class CaptureCrossAttention:
    """diffusers' plain `AttnProcessor` arithmetic with the probabilities materialised, so they can be
    stored (and differentiated). SDPA, the default processor, never forms them."""

    def __init__(self, name: str, store: AttentionStore) -> None:
        self.name, self.store = name, store

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None) -> torch.Tensor:
        residual = hidden_states
        batch, length, _ = hidden_states.shape  # SD transformer blocks pass [B, HW, C]
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        attention_mask = attn.prepare_attention_mask(attention_mask, context.shape[1], batch)
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probabilities = attn.get_attention_scores(query, key, attention_mask)  # [B*heads, HW, 77]
        if self.store.edit is not None:
            probabilities = self.store.edit(probabilities)
        if self.store.recording:
            self.store.maps[self.name] = probabilities
        hidden_states = attn.batch_to_head_dim(torch.bmm(probabilities, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


@contextmanager
def capture_cross_attention(unet: Any) -> Iterator[AttentionStore]:
    """Install capturing processors on the guided layers of a (shared) UNet and put the previous
    processors back on exit, whatever happens. The UNet belongs to the shared SD-1.5 base, so other
    tabs would see the swap: `swapped_attention` lets one swapping run at a time in, and the capturing
    processor computes the same attention as the default one (except during a forward-guided step),
    so a concurrent run of another tab on the same UNet gets the same result, only slower. The
    heavy events of every tab share one queue (`app.GPU_QUEUE`), so none runs then."""
    store = AttentionStore()
    with swapped_attention(unet, {name: CaptureCrossAttention(name, store) for name in guided_layer_names(unet)}):
        yield store


# ---- the sampler ------------------------------------------------------------------------------

@dataclass
class StepRecord:
    """What happened at one denoising step."""

    index: int
    timestep: int
    sigma: float
    energies: list[float] = field(default_factory=list)  # L before each guidance update (empty: not guided)
    energy_after: float = 0.0  # L at the latent the normal step used
    inside_after: float = 0.0  # mean share of the phrases' attention inside their boxes, same latent
    # (with forward guidance: of the edited attention the step used)
    phrase_maps: np.ndarray | None = None  # [phrases, h, w] attention per phrase (mean of layers, heads, tokens)
    token_maps: np.ndarray | None = None  # [len(token_maps_of), h, w] single tokens' attention, read like phrase_maps


@dataclass
class LayoutGuidanceOutput:
    image: Any  # PIL image
    steps: list[StepRecord]
    token_groups: list[list[int]]


def lms_pipeline(base: Any) -> Any:
    """A pipeline sharing the base's modules with its own LMS scheduler (schedulers keep state, so
    each run gets a fresh one); the repo samples with LMSDiscreteScheduler."""
    from diffusers import LMSDiscreteScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pipe(
        base, scheduler=LMSDiscreteScheduler.from_config(base.scheduler.config), dtype=base.dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _phrase_maps(layer_maps: list[torch.Tensor], token_groups: list[list[int]]) -> np.ndarray:
    """Per phrase, its tokens' attention averaged over heads and layers, at the finest layer's size."""
    side = max(int(round(m.shape[1] ** 0.5)) for m in layer_maps)
    per_layer = []
    for probabilities in layer_maps:
        own = int(round(probabilities.shape[1] ** 0.5))
        groups = torch.stack([probabilities[:, :, tokens].float().mean(dim=(0, 2)) for tokens in token_groups])
        per_layer.append(F.interpolate(groups.reshape(1, -1, own, own), size=(side, side), mode="bilinear")[0])
    return torch.stack(per_layer).mean(dim=0).cpu().numpy()


def generate_with_layout_guidance(
    pipe: Any,
    prompt: str,
    token_groups: list[list[int]],
    box_groups: list[list[BoxCoordinates]],
    generator: torch.Generator,
    steps: int = STEPS,
    guided_steps: int = GUIDED_STEPS,
    iterations: int = ITERATIONS,
    loss_scale: float = LOSS_SCALE,
    loss_threshold: float = LOSS_THRESHOLD,
    guidance_scale: float = CFG_SCALE,
    forward_strength: float = 0.0,
    on_step: Callable[[int], None] | None = None,
    token_maps_of: Sequence[int] = (),
) -> LayoutGuidanceOutput:
    """Sample one image from `pipe` (a StableDiffusionPipeline with an LMS scheduler of its own),
    steering the latent so each object's tokens (`token_groups`) attend inside its boxes.

    `forward_strength` λ > 0 also edits the attention of the normal step during the guided steps
    (forward guidance). With `loss_scale=0` and λ=0, or `guided_steps=0`, this is the plain CFG
    sampler (the same image as `pipe(...)` with the same generator). Each step also records the maps of
    the single token positions `token_maps_of` (e.g. the start and end tokens), from the same pass."""
    device = pipe._execution_device
    do_cfg = guidance_scale > 1.0
    with torch.no_grad():
        conditional, unconditional = pipe.encode_prompt(prompt, device, 1, do_cfg)
    text = torch.cat([unconditional, conditional]) if do_cfg else conditional
    scheduler = pipe.scheduler
    scheduler.set_timesteps(steps, device=device)
    height = width = pipe.unet.config.sample_size * pipe.vae_scale_factor
    latents = pipe.prepare_latents(1, pipe.unet.config.in_channels, height, width, conditional.dtype, device,
                                   generator)
    records = []
    with capture_cross_attention(pipe.unet) as store:
        store.recording = True
        for index, timestep in enumerate(scheduler.timesteps):
            sigma = float(scheduler.sigmas[index])
            record = StepRecord(index, int(timestep), sigma)
            if index < guided_steps and loss_scale > 0:
                latents = _guide(pipe, store, latents, timestep, sigma, conditional, token_groups, box_groups,
                                 iterations, loss_scale, loss_threshold, record)
            if index < guided_steps and forward_strength > 0:
                store.edit = forward_guidance_edit(token_groups, box_groups, forward_strength, do_cfg)
            with torch.no_grad():
                model_input = scheduler.scale_model_input(torch.cat([latents] * 2) if do_cfg else latents, timestep)
                noise = pipe.unet(model_input, timestep, encoder_hidden_states=text).sample
                store.edit = None
                layer_maps = store.layer_maps(conditional_half=do_cfg)
                record.energy_after = float(layout_energy(layer_maps, token_groups, box_groups))
                record.inside_after = mean_inside_fraction(layer_maps, token_groups, box_groups)
                record.phrase_maps = _phrase_maps(layer_maps, token_groups)
                if token_maps_of:
                    record.token_maps = _phrase_maps(layer_maps, [[token] for token in token_maps_of])
                if do_cfg:
                    uncond_noise, cond_noise = noise.chunk(2)
                    noise = uncond_noise + guidance_scale * (cond_noise - uncond_noise)
                latents = scheduler.step(noise, timestep, latents).prev_sample
            records.append(record)
            if on_step is not None:
                on_step(index)
        store.recording = False
    with torch.no_grad():
        decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
        image = screened_images(pipe, decoded)[0]
    return LayoutGuidanceOutput(image, records, [list(tokens) for tokens in token_groups])


def _guide(pipe: Any, store: AttentionStore, latents: torch.Tensor, timestep: torch.Tensor, sigma: float,
           conditional: torch.Tensor, token_groups: list[list[int]], box_groups: list[list[BoxCoordinates]],
           iterations: int, loss_scale: float, loss_threshold: float, record: StepRecord) -> torch.Tensor:
    """Up to `iterations` updates z ← z - loss_scale·σ²·∇E, each from one UNet forward + backward with
    the conditional embedding only; stop after the update whose energy was at or below the threshold."""
    for _ in range(iterations):
        with torch.enable_grad():
            latents = latents.detach().requires_grad_(True)
            pipe.unet(pipe.scheduler.scale_model_input(latents, timestep), timestep,
                      encoder_hidden_states=conditional)
            energy = layout_energy(store.layer_maps(conditional_half=False), token_groups, box_groups)
            (gradient,) = torch.autograd.grad(loss_scale * energy, latents)
        store.maps.clear()  # frees the graph
        latents = (latents - gradient * sigma ** 2).detach()
        value = float(energy.detach())
        record.energies.append(value)
        if value <= loss_threshold:
            break
    return latents
