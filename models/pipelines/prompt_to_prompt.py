"""Prompt-to-Prompt (Hertz et al. 2022, google/prompt-to-prompt) on SD-1.5 with diffusers attention
processors — see ALGORITHMS.md §9.

The source prompt and the edited prompt are denoised in one batch from the same x_T. Every attention
layer of the UNet goes through `PromptToPromptProcessor`, which hands the softmaxed probabilities of
the conditional half of the CFG batch to the `AttentionController`:

* cross-attention, for the first `cross_replace_steps`·N steps: the edit's maps are replaced by the
  source's maps, mapped onto the edit's tokens (replace: a word-swap matrix M, A_e = A_0·M; refine:
  a token alignment, new words keep their own maps; re-weight: the refine maps × a per-token weight);
* self-attention, for the first `self_replace_steps`·N steps, in the layers at ≤ 1/4 of the latent
  side (16² at 512 px): the edit takes the source's maps, which keeps the layout.

The controller also stores the per-token cross-attention the UNet used (after the edit), averaged
over heads, steps and the layers at 1/4 of the latent side (the repo's `aggregate_attention(res=16)`).
The DDIM sampler here is shared with null-text inversion (`null_text_inversion.py`), which gives the
per-step unconditional embeddings that make prompt 0 reproduce a real photo.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch

from ..safety import screened_images
from ..stable_diffusion import swapped_attention

EDITS = ("replace", "refine", "reweight")
# The notebooks' values.
CROSS_REPLACE_STEPS = 0.8
SELF_REPLACE_STEPS = 0.4
GUIDANCE_SCALE = 7.5
STEPS = 50


class EditError(ValueError):
    """The two prompts (or the re-weighted word) do not fit the chosen edit."""


# ---- words → token positions and the edit mappers ------------------------------------------------

def word_token_spans(tokenizer: Any, prompt: str) -> list[list[int]]:
    """Token positions (0 = <|startoftext|>) of each whitespace-separated word, as the repo's
    `get_word_inds` (CLIP's tokenizer encodes a prompt word by word). Positions past the last one
    the text encoder sees are dropped."""
    last = tokenizer.model_max_length - 2  # the end token takes the last position
    spans, position = [], 1
    for word in prompt.split():
        count = len(tokenizer(word, add_special_tokens=False).input_ids)
        spans.append([p for p in range(position, position + count) if p <= last])
        position += count
    return spans


def replace_mapper(tokenizer: Any, source: str, target: str) -> torch.Tensor:
    """[L, L] with A_e[:, :, n] = Σ_w A_0[:, :, w]·M[w, n] (`get_replacement_mapper`): unchanged words
    map token to token; a swapped word's source tokens spread over its target tokens (weight
    1/len(target tokens) when the counts differ). After the last word, positions map i → j with the
    words' token-count difference (the repo fills M[j, j] there, which shifts the end token)."""
    source_words, target_words = source.split(), target.split()
    if len(source_words) != len(target_words):
        raise EditError(f"Replace swaps words one for one, but the source prompt has {len(source_words)} words and "
                        f"the edit {len(target_words)}. Change words without adding or removing any, or use refine.")
    length = tokenizer.model_max_length
    mapper = torch.zeros(length, length)
    mapper[0, 0] = 1
    i = j = 1
    for source_word, target_word, source_span, target_span in zip(
            source_words, target_words, word_token_spans(tokenizer, source), word_token_spans(tokenizer, target)):
        if source_word == target_word or len(source_span) == len(target_span):
            for a, b in zip(source_span, target_span):
                mapper[a, b] = 1
        elif source_span and target_span:
            mapper[torch.tensor(source_span)[:, None], torch.tensor(target_span)[None, :]] = 1 / len(target_span)
        i, j = i + len(source_span), j + len(target_span)
    while i < length and j < length:
        mapper[i, j] = 1
        i, j = i + 1, j + 1
    return mapper


def _align(x: list[int], y: list[int]) -> list[int]:
    """Needleman–Wunsch (gap 0, match 1, mismatch −1) as in the repo's `seq_aligner`: for each position
    of y, the position of x it is aligned to, or −1 for an inserted token. Ties prefer a gap in x,
    then in y, then the diagonal, as the repo's traceback does."""
    rows, columns = len(x) + 1, len(y) + 1
    score = [[0] * columns for _ in range(rows)]
    trace = [[1] * columns for _ in range(rows)]  # 1 left (insert y), 2 up (skip x), 3 diagonal
    for i in range(1, rows):
        trace[i][0] = 2
        for j in range(1, columns):
            moves = [score[i][j - 1], score[i - 1][j], score[i - 1][j - 1] + (1 if x[i - 1] == y[j - 1] else -1)]
            score[i][j] = max(moves)
            trace[i][j] = moves.index(score[i][j]) + 1
    mapping = [-1] * len(y)
    i, j = len(x), len(y)
    while i > 0 or j > 0:
        move = trace[i][j]
        if move == 3:
            i, j = i - 1, j - 1
            mapping[j] = i
        elif move == 1:
            j -= 1
        else:
            i -= 1
    return mapping


def refine_mapper(tokenizer: Any, source: str, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(mapper [L] long, alphas [L]): the edit's token j takes the source's map `mapper[j]` where
    `alphas[j]` is 1, and keeps its own map (an inserted word) where it is 0 (`get_refinement_mapper`).
    The padding after the edit's end token follows the source's padding."""
    length = tokenizer.model_max_length
    x = tokenizer(source, truncation=True, max_length=length).input_ids
    y = tokenizer(target, truncation=True, max_length=length).input_ids
    aligned = _align(x, y)
    mapper = torch.tensor([max(a, 0) for a in aligned] + [min(len(x) + k, length - 1) for k in range(length - len(y))])
    alphas = torch.tensor([float(a >= 0) for a in aligned] + [1.0] * (length - len(y)))
    return mapper, alphas


def equalizer(tokenizer: Any, prompt: str, word: str, weight: float) -> torch.Tensor:
    """[L] ones, with `weight` on the tokens of every occurrence of `word` in `prompt` (`get_equalizer`)."""
    scale = torch.ones(tokenizer.model_max_length)
    spans = [span for text, span in zip(prompt.split(), word_token_spans(tokenizer, prompt)) if text == word]
    if not spans:
        raise EditError(f"The word {word!r} is not in the edited prompt {prompt!r}; type one of its words exactly "
                        "(words are split at spaces, so 'cat,' is not 'cat').")
    for span in spans:
        scale[span] = weight
    return scale


@dataclass
class CrossEdit:
    """How the edit's cross-attention is rebuilt from the source's (A_0) and its own (A_e), both
    [edits, heads, HW, L]."""

    kind: str
    mapper: torch.Tensor
    alphas: torch.Tensor | None = None
    scale: torch.Tensor | None = None

    def __call__(self, base: torch.Tensor, edits: torch.Tensor) -> torch.Tensor:
        mapper = self.mapper.to(base.device)
        if self.kind == "replace":
            return torch.einsum("hpw,wn->hpn", base, mapper.to(base.dtype)).unsqueeze(0).expand_as(edits)
        alphas = self.alphas.to(base.device, base.dtype)
        refined = base[..., mapper] * alphas + edits * (1 - alphas)
        return refined if self.scale is None else refined * self.scale.to(base.device, base.dtype)


def cross_edit(tokenizer: Any, kind: str, source: str, target: str, word: str = "", weight: float = 1.0) -> CrossEdit:
    """The edit of one prompt pair: replace a word, refine (add words), or re-weight `word` of the
    edited prompt by `weight` (on top of refine, which is the identity when the prompts are equal)."""
    if kind == "replace":
        return CrossEdit(kind, replace_mapper(tokenizer, source, target))
    if kind not in EDITS:
        raise EditError(f"Unknown edit {kind!r}; choose one of {', '.join(EDITS)}.")
    mapper, alphas = refine_mapper(tokenizer, source, target)
    scale = equalizer(tokenizer, target, word, weight) if kind == "reweight" else None
    return CrossEdit(kind, mapper, alphas, scale)


# ---- the controller and its processors ---------------------------------------------------------

@dataclass
class AttentionController:
    """Edits and stores the attention of a batch [uncond × P ; cond × P] (P prompts, prompt 0 = source)."""

    prompts: int
    steps: int
    latent_pixels: int  # H·W of the latent
    edit: CrossEdit | None = None  # None: store only
    cross_replace_steps: float = CROSS_REPLACE_STEPS
    self_replace_steps: float = SELF_REPLACE_STEPS
    step: int = 0
    maps: torch.Tensor | None = None  # [P, HW/16, L]: the cond cross-attention, summed over layers and steps
    map_calls: int = 0

    @property
    def map_pixels(self) -> int:
        """Layers whose maps are stored and whose self-attention is replaced: ≤ 1/4 of the latent side."""
        return self.latent_pixels // 16

    def __call__(self, probabilities: torch.Tensor, heads: int, is_cross: bool) -> torch.Tensor:
        total, pixels, keys = probabilities.shape
        grouped = probabilities.reshape(total // heads, heads, pixels, keys)
        conditional = grouped[self.prompts:]
        if self.edit is not None and self.prompts > 1:
            base, edits = conditional[0], conditional[1:]
            if is_cross and self.step < int(self.cross_replace_steps * self.steps):
                edits = self.edit(base, edits)
            elif (not is_cross and pixels <= self.map_pixels
                  and self.step < int(self.self_replace_steps * self.steps)):
                edits = base.unsqueeze(0).expand_as(edits)
            conditional = torch.cat([base.unsqueeze(0), edits])
            grouped = torch.cat([grouped[:self.prompts], conditional])
        if is_cross and pixels == self.map_pixels:
            mean = conditional.mean(dim=1).float().detach()
            self.maps = mean if self.maps is None else self.maps + mean
            self.map_calls += 1
        return grouped.reshape(total, pixels, keys)

    def token_maps(self) -> torch.Tensor:
        """[P, side, side, L]: the average stored cross-attention per prompt and token."""
        side = int(round(self.map_pixels ** 0.5))
        return (self.maps / max(self.map_calls, 1)).reshape(self.prompts, side, -1, self.maps.shape[-1])


class PromptToPromptProcessor:
    """diffusers' plain `AttnProcessor` arithmetic with the probabilities materialised (SDPA never
    forms them) and passed through the controller."""

    def __init__(self, controller: AttentionController) -> None:
        self.controller = controller

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None) -> torch.Tensor:
        residual = hidden_states
        batch = hidden_states.shape[0]  # SD transformer blocks pass [B, HW, C]
        is_cross = encoder_hidden_states is not None
        context = encoder_hidden_states if is_cross else hidden_states
        if is_cross and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        attention_mask = attn.prepare_attention_mask(attention_mask, context.shape[1], batch)
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probabilities = self.controller(attn.get_attention_scores(query, key, attention_mask), attn.heads, is_cross)
        hidden_states = attn.batch_to_head_dim(torch.bmm(probabilities, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


@contextmanager
def controlled_attention(unet: Any, controller: AttentionController) -> Iterator[AttentionController]:
    """All attention layers of the (shared) UNet go through the controller for the run; the previous
    processors are put back on exit, whatever happens."""
    with swapped_attention(unet, PromptToPromptProcessor(controller)):
        yield controller


# ---- DDIM (η = 0), shared with null-text inversion ---------------------------------------------

@dataclass
class DDIMSchedule:
    """DDIM's deterministic update on the checkpoint's noise schedule (no clipping; ᾱ before the first
    timestep is ᾱ_0, i.e. `set_alpha_to_one=False`, as in the null-text notebook)."""

    timesteps: list[int]  # descending
    alphas_cumprod: torch.Tensor
    stride: int

    @classmethod
    def for_scheduler(cls, scheduler_config: Any, steps: int) -> "DDIMSchedule":
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler.from_config(scheduler_config, clip_sample=False, set_alpha_to_one=False)
        scheduler.set_timesteps(steps)
        return cls([int(t) for t in scheduler.timesteps], scheduler.alphas_cumprod.double(),
                   scheduler.config.num_train_timesteps // steps)

    def alpha(self, timestep: int) -> float:
        return float(self.alphas_cumprod[max(timestep, 0)])

    def move(self, noise: torch.Tensor, latent: torch.Tensor, t_from: int, t_to: int) -> torch.Tensor:
        """z_{t_to} from z_{t_from} along the predicted noise: a denoising step when t_to < t_from
        (`DDIMScheduler.step`), an inversion step when t_to > t_from."""
        a_from, a_to = self.alpha(t_from), self.alpha(t_to)
        original = (latent - (1 - a_from) ** 0.5 * noise) / a_from ** 0.5
        return a_to ** 0.5 * original + (1 - a_to) ** 0.5 * noise

    def step(self, noise: torch.Tensor, timestep: int, latent: torch.Tensor) -> torch.Tensor:
        return self.move(noise, latent, timestep, timestep - self.stride)


def encode_text(pipe: Any, prompts: Sequence[str]) -> torch.Tensor:
    """CLIP text embeddings [len(prompts), 77, d] as the pipeline makes them."""
    with torch.no_grad():
        embeddings, _ = pipe.encode_prompt(list(prompts), pipe._execution_device, 1, False)
    return embeddings


def guided_noise(unet: Any, latents: torch.Tensor, timestep: int, unconditional: torch.Tensor,
                 conditional: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """ε_∅ + w(ε_c − ε_∅) from one UNet call on the batch [uncond ; cond]."""
    noise = unet(torch.cat([latents] * 2), timestep, encoder_hidden_states=torch.cat([unconditional, conditional]),
                 return_dict=False)[0]
    uncond_noise, cond_noise = noise.chunk(2)
    return uncond_noise + guidance_scale * (cond_noise - uncond_noise)


@dataclass
class SampleOutput:
    latents: torch.Tensor  # [P, 4, h, w] final latents
    images: list[Any]  # PIL, one per prompt
    unet_calls: int = 0


def decode(pipe: Any, latents: torch.Tensor) -> list[Any]:
    with torch.no_grad():
        decoded = pipe.vae.decode(latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor, return_dict=False)[0]
        return screened_images(pipe, decoded)


def sample(pipe: Any, prompts: Sequence[str], x_t: torch.Tensor, schedule: DDIMSchedule,
           guidance_scale: float = GUIDANCE_SCALE, null_embeddings: Sequence[torch.Tensor] | None = None,
           controller: AttentionController | None = None,
           on_step: Callable[[int], None] | None = None) -> SampleOutput:
    """DDIM from one x_T [1, 4, h, w] for every prompt (one batch), CFG with the plain ∅ = CLIP("")
    or, after null-text inversion, with the optimised ∅_i of each step. With a controller, its
    processors are installed for the run (and removed after)."""
    unet = pipe.unet
    conditional = encode_text(pipe, prompts).to(unet.dtype)
    plain_null = encode_text(pipe, [""]).to(unet.dtype)
    latents = x_t.to(unet.dtype).expand(len(prompts), *x_t.shape[1:])
    with (controlled_attention(unet, controller) if controller is not None else nullcontext()), torch.no_grad():
        for index, timestep in enumerate(schedule.timesteps):
            if controller is not None:
                controller.step = index
            null = null_embeddings[index].to(unet.dtype) if null_embeddings is not None else plain_null
            noise = guided_noise(unet, latents, timestep, null.expand_as(conditional), conditional, guidance_scale)
            latents = schedule.step(noise, timestep, latents)
            if on_step is not None:
                on_step(index)
    return SampleOutput(latents, decode(pipe, latents), unet_calls=len(schedule.timesteps))

