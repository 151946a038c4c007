"""Personalisation: four ways to teach Stable Diffusion a new concept, told apart by *what they change*.

Textual inversion (Gal et al. 2022) learns one new row of the text encoder's token-embedding table;
LoRA (Hu et al. 2021) learns low-rank updates W + (α/r)·B·A of the UNet's attention projections;
DreamBooth (Ruiz et al. 2023) fine-tunes the whole UNet on a rare word ("sks dog") — shipped as a
DreamBooth-LoRA in practice; Custom Diffusion (Kumari et al. 2023) fine-tunes only the cross-attention
K and V projections plus new modifier tokens, and merges several concepts.

Everything is attached to the one shared SD-1.5 base for a run and removed after it (adapters
deleted, attention processors restored, added tokens removed), so no other request or tab sees it.
"""
from __future__ import annotations

import io
import re
import tempfile
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

import models
from demos.shared.comparison import IMAGE, Method, Output
from demos import ASSETS
from demos.shared.generation import OUTPUT_DIR, generator_for, resolve_seed
from demos.shared.inputs import number_in_range, one_of, prompt_text, rgb_image
from demos.shared.limits import LIMITS
from models import ProgressFn, UserError
from models.safety import screened_images
from models.stable_diffusion import attention_held
from models.pipelines.personalisation_training import LORA, TEXTUAL_INVERSION as TI, save_weights, train_concept
from models.personalisation import (
    CONCEPTS, CUSTOM_DIFFUSION, CUSTOM_DIFFUSION_FILE, DREAMBOOTH_LORA, STYLE_LORA, TEXTUAL_INVERSION, read_weights,
    unload_tokens,
)
from models.stable_diffusion import SD15, TINY_IMAGE_SIDE

PLAIN = "plain SD"
UPLOADED = "uploaded file"
METHODS = {PLAIN: None, "textual inversion": TEXTUAL_INVERSION, "LoRA": STYLE_LORA,
           "DreamBooth-LoRA": DREAMBOOTH_LORA, "Custom Diffusion": CUSTOM_DIFFUSION}
PLAIN_SUBJECT = "a cat"  # fills "{}" for plain SD
DEFAULT_PROMPT = "a photo of {} on the beach"
BLOCKS = ("text embedding", "down_blocks.0", "down_blocks.1", "down_blocks.2", "down_blocks.3", "mid_block",
          "up_blocks.0", "up_blocks.1", "up_blocks.2", "up_blocks.3", "other UNet")


def default_resolution() -> int:
    return TINY_IMAGE_SIDE // 2 if models.model_settings.profile == "tiny" else 512


# ---- what is attached ---------------------------------------------------------------------------

@dataclass
class Attachment:
    """What one run puts on the shared base: LoRA adapters with weights, new tokens, attention weights."""

    loras: dict[str, tuple[dict[str, torch.Tensor], float]] = field(default_factory=dict)  # adapter → (weights, w)
    tokens: dict[str, torch.Tensor] = field(default_factory=dict)  # token → embedding vector(s)
    attention: dict[str, Any] | None = None  # Custom Diffusion's K/V state dict


def unet_prefixed(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers' 2023 LoRA files keyed the UNet's modules directly; diffusers 0.42's `load_lora_weights`
    only takes keys under `unet.` / `text_encoder.`, so those files get the prefix they imply."""
    if any(key.startswith(("unet.", "text_encoder.")) for key in state_dict):
        return dict(state_dict)
    return {f"unet.{key}": value for key, value in state_dict.items()}


def concept_attachment(name: str, lora_weight: float = 1.0) -> Attachment:
    """A registered concept's files as an attachment."""
    files = models.get(name)
    concept = CONCEPTS[name]
    if concept.method in ("LoRA", "DreamBooth-LoRA"):
        return Attachment(loras={name: (unet_prefixed(files[concept.files[0]]), lora_weight)})
    tokens = {token: vector for file in concept.files if file != CUSTOM_DIFFUSION_FILE
              for token, vector in files[file].items()}
    return Attachment(tokens=tokens, attention=files.get(CUSTOM_DIFFUSION_FILE))


@contextmanager
def attached(pipe: Any, attachment: Attachment) -> Iterator[None]:
    """Attach for one run, and always remove: adapters deleted, the original attention processors put
    back (held from other runs meanwhile: the UNet is shared), the added tokens (and their embedding rows)
    removed."""
    with attention_held(pipe.unet) if attachment.attention is not None else nullcontext():
        with _tokens_and_adapters_attached(pipe, attachment):
            if attachment.attention is not None:
                # Without `_pipeline`, diffusers 0.42.1 builds the processors but never installs them.
                pipe.unet.load_attn_procs(dict(attachment.attention), _pipeline=pipe)
            yield


@contextmanager
def _tokens_and_adapters_attached(pipe: Any, attachment: Attachment) -> Iterator[None]:
    tokens_before = set(pipe.tokenizer.get_added_vocab())
    adapters: list[str] = []
    try:
        for token, vector in attachment.tokens.items():
            pipe.load_textual_inversion({token: vector}, token=token)
        for adapter, (weights, _) in attachment.loras.items():
            adapters.append(adapter)
            pipe.load_lora_weights(dict(weights), adapter_name=adapter)
        if adapters:
            pipe.set_adapters(adapters, adapter_weights=[attachment.loras[a][1] for a in adapters])
        yield
    finally:
        present = {name for names in pipe.get_list_adapters().values() for name in names}
        if present & set(adapters):
            pipe.delete_adapters(sorted(present & set(adapters)))
        added = sorted(set(pipe.tokenizer.get_added_vocab()) - tokens_before)
        if added:
            unload_tokens(pipe, added)


def active_state(pipe: Any) -> dict[str, Any]:
    """What is on the shared base right now: adapters, non-default processors, added tokens."""
    return {"adapters": sorted({a for names in pipe.get_list_adapters().values() for a in names}),
            "processors": sorted({type(p).__name__ for p in pipe.unet.attn_processors.values()}),
            "tokens": sorted(pipe.tokenizer.get_added_vocab())}


# ---- generation ---------------------------------------------------------------------------------

@dataclass
class Sample:
    image: Image.Image
    latent: torch.Tensor  # the final latent (for distances between runs)
    prompt: str


def sampling_pipeline(base: Any) -> Any:
    """The shared base's modules with a DDIM scheduler of its own (the base's scheduler is never touched)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pipe(base, scheduler=DDIMScheduler.from_config(base.scheduler.config, clip_sample=False),
                                             dtype=base.unet.dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe: Any, prompt: str, seed: int, steps: int, guidance: float, side: int) -> Sample:
    """Text to image; the latent is kept so runs can be compared by distance."""
    with torch.inference_mode():
        latent = pipe(prompt, height=side, width=side, num_inference_steps=steps, guidance_scale=guidance,
                      generator=generator_for(seed), output_type="latent").images
        pixels = pipe.vae.decode(latent / pipe.vae.config.scaling_factor).sample
        image = screened_images(pipe, pixels)[0]
    return Sample(image, latent.float().cpu(), prompt)


def filled(prompt: str, subject: str) -> str:
    """The prompt template with `{}` replaced by a method's subject (a template without `{}` is used as is)."""
    return prompt.replace("{}", subject)


# ---- the mechanism view -------------------------------------------------------------------------

@dataclass
class Footprint:
    method: str
    parameters: int  # added or changed
    file_bytes: int
    touches: str
    per_block: dict[str, int]  # parameters per block of BLOCKS


def block_of(key: str, unet: bool) -> str:
    """The block of the base a weight belongs to; a token file's keys are words of the text embedding."""
    if not unet:
        return "text embedding"
    found = re.search(r"(down_blocks\.\d|mid_block|up_blocks\.\d)", key)
    return found.group(1) if found else "other UNet"


def footprint(method: str, weights: dict[str, dict[str, Any]], file_bytes: int) -> Footprint:
    """Parameters a method adds or changes, from its files' tensors, per block of the base."""
    per_block = dict.fromkeys(BLOCKS, 0)
    kinds: set[str] = set()
    rows = 0
    for file, state in weights.items():
        for key, tensor in state.items():
            if not isinstance(tensor, torch.Tensor):
                continue
            block = block_of(key, unet="." in key)  # module paths vs. token words
            per_block[block] += tensor.numel()
            if block == "text embedding":
                rows += tensor.numel() // tensor.shape[-1]
            elif "lora" in key:
                kinds.add("UNet attention Q, K, V, out (low-rank)")
            elif "to_k" in key or "to_v" in key:
                kinds.add("cross-attention K, V (full copies)")
    if rows:
        kinds.add(f"text encoder: {rows} new embedding row{'s' if rows > 1 else ''}")
    return Footprint(method, sum(per_block.values()), file_bytes, "; ".join(sorted(kinds)), per_block)


def concept_footprint(name: str) -> Footprint:
    return footprint(CONCEPTS[name].method, models.get(name), concept_file_bytes(name))


def concept_file_bytes(name: str) -> int:
    """Bytes of the concept's files as stored in this profile's cache (as published where not cached)."""
    download, _ = models.model_cache.plan(models.REGISTRY[name])
    return sum(models.model_cache.file_sizes(download).values())


def unet_block_parameters(unet: Any) -> dict[str, int]:
    """Parameters per block of the whole UNet: what a full DreamBooth fine-tune changes."""
    counts = dict.fromkeys(BLOCKS, 0)
    for key, parameter in unet.named_parameters():
        if "lora" not in key:
            counts[block_of(key, unet=True)] += parameter.numel()
    return counts


def footprint_chart(footprints: list[Footprint], full_unet: dict[str, int]) -> Image.Image:
    """Parameters each method changes per block (log scale), full DreamBooth fine-tuning for reference."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    rows = [(f.method, f.per_block) for f in footprints] + [("DreamBooth (full UNet)", full_unet)]
    figure, axis = pyplot.subplots(figsize=(9, 3.2), dpi=80)
    width = 0.8 / len(rows)
    for index, (label, counts) in enumerate(rows):
        axis.bar(np.arange(len(BLOCKS)) + index * width, [max(counts.get(b, 0), 0.9) for b in BLOCKS], width,
                 label=label)
    axis.set_yscale("log")
    axis.set_ylim(bottom=1)
    labels = [b.replace("_blocks.", " ").replace("_block", "").replace("text embedding", "text emb.") for b in BLOCKS]
    axis.set_xticks(np.arange(len(BLOCKS)) + 0.4 - width / 2, labels, fontsize=8)
    axis.set_ylabel("parameters changed")
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return Image.open(buffer).convert("RGB")


def nearest_words(pipe: Any, vector: torch.Tensor, count: int = 8) -> list[tuple[str, float]]:
    """The vocabulary tokens whose input embeddings are closest (cosine) to a learned token vector."""
    table = pipe.text_encoder.get_input_embeddings().weight.detach().float()
    base_vocabulary = len(pipe.tokenizer) - len(pipe.tokenizer.get_added_vocab())
    similarity = torch.nn.functional.cosine_similarity(table[:base_vocabulary], vector.float().reshape(1, -1).to(
        table.device), dim=-1)
    best = similarity.topk(min(count, base_vocabulary))
    tokens = pipe.tokenizer.convert_ids_to_tokens(best.indices.tolist())
    return [(token.replace("</w>", ""), float(score)) for token, score in zip(tokens, best.values.tolist())]


# ---- runs ---------------------------------------------------------------------------------------

@dataclass
class PersonalisationResult:
    plain: Image.Image  # plain SD, same prompt template and seed
    image: Image.Image  # with the method attached
    method: str
    prompt: str  # as sent with the method
    plain_prompt: str
    seed: int
    adapters: list[str]  # adapters active on the UNet during the run
    footprint: Footprint
    nearest: list[tuple[str, float]]  # textual inversion: nearest vocabulary words of the new token
    latent_distance: float  # ‖z_method − z_plain‖ / ‖z_plain‖
    seconds: float


def check_inputs(prompt: Any, steps: Any, guidance: Any, seed: Any, resolution: Any) -> tuple[str, int, float, int, int]:
    prompt = prompt_text(prompt, "the image ({} is replaced by each method's concept)")
    steps = number_in_range(steps, "The number of steps", 1, LIMITS.max_steps, whole=True)
    guidance = number_in_range(guidance, "The guidance scale (CFG)", 0, 30)
    seed = resolve_seed(seed)
    side = number_in_range(resolution if resolution is not None else default_resolution(), "The resolution", 64,
                           1024, whole=True)
    if side % 8:
        raise UserError(f"The resolution must be a multiple of 8 (the VAE downsamples by 8); got {side}.")
    return prompt, steps, guidance, seed, side


def _weight(value: Any, what: str) -> float:
    return number_in_range(value, what, 0, 1.5)


def run_personalisation(prompt: str = DEFAULT_PROMPT, method: str = "LoRA", lora_weight: Any = 1.0,
                        dreambooth_weight: Any = 0.0, seed: Any = 0, steps: Any = 4, guidance: Any = 7.5,
                        resolution: Any = None, uploaded: Any = None, uploaded_token: str = "",
                        progress: ProgressFn | None = None) -> PersonalisationResult:
    """Plain SD and SD with one method attached, same prompt template and seed. With "LoRA", a
    DreamBooth-LoRA weight above 0 mixes the two adapters (`set_adapters`)."""
    prompt, steps, guidance, seed, side = check_inputs(prompt, steps, guidance, seed, resolution)
    one_of(method, "method", [*METHODS, UPLOADED])
    lora_weight = _weight(lora_weight, "The LoRA weight")
    dreambooth_weight = _weight(dreambooth_weight, "The DreamBooth-LoRA weight")
    base = models.get(SD15, progress)
    pipe = sampling_pipeline(base)
    started = time.perf_counter()
    plain_prompt = filled(prompt, PLAIN_SUBJECT)
    plain = generate(pipe, plain_prompt, seed, steps, guidance, side)
    if method == UPLOADED:
        attachment, weights, subject = uploaded_attachment(uploaded, uploaded_token, pipe, lora_weight)
        file_bytes = Path(uploaded).stat().st_size
    elif method == PLAIN:
        attachment, weights, subject, file_bytes = Attachment(), {}, PLAIN_SUBJECT, 0
    else:
        name = METHODS[method]
        attachment = concept_attachment(name, lora_weight)
        weights, subject, file_bytes = models.get(name, progress), CONCEPTS[name].subject, concept_file_bytes(name)
        if method == "LoRA" and dreambooth_weight > 0:
            attachment.loras.update(concept_attachment(DREAMBOOTH_LORA, dreambooth_weight).loras)
    nearest = [hit for vector in attachment.tokens.values() for hit in nearest_words(pipe, vector)][:8]
    with attached(pipe, attachment):
        adapters = active_state(pipe)["adapters"]
        sample = generate(pipe, filled(prompt, subject), seed, steps, guidance, side)
    distance = float((sample.latent - plain.latent).norm() / plain.latent.norm().clamp(min=1e-8))
    return PersonalisationResult(plain.image, sample.image, method, sample.prompt, plain_prompt, seed, adapters,
                                 footprint(method, weights, file_bytes), nearest, distance,
                                 time.perf_counter() - started)


@dataclass
class AllMethodsResult:
    images: list[tuple[Image.Image, str]]  # plain, TI, LoRA 0 / 0.5 / 1, DreamBooth-LoRA, Custom Diffusion
    footprints: list[Footprint]
    chart: Image.Image
    seed: int


def run_all_methods(prompt: str = DEFAULT_PROMPT, seed: Any = 0, steps: Any = 4, guidance: Any = 7.5,
                    resolution: Any = None, progress: ProgressFn | None = None) -> AllMethodsResult:
    """The same prompt template and seed through plain SD and each method (LoRA at weights 0, 0.5, 1)."""
    prompt, steps, guidance, seed, side = check_inputs(prompt, steps, guidance, seed, resolution)
    base = models.get(SD15, progress)
    pipe = sampling_pipeline(base)
    runs = [(PLAIN, None, 0.0), ("textual inversion", TEXTUAL_INVERSION, 1.0), ("LoRA", STYLE_LORA, 0.0),
            ("LoRA", STYLE_LORA, 0.5), ("LoRA", STYLE_LORA, 1.0), ("DreamBooth-LoRA", DREAMBOOTH_LORA, 1.0),
            ("Custom Diffusion", CUSTOM_DIFFUSION, 1.0)]
    images = []
    for index, (method, name, weight) in enumerate(runs):
        if progress is not None:
            progress(index / len(runs), desc=f"{method}")
        attachment = concept_attachment(name, weight) if name else Attachment()
        subject = CONCEPTS[name].subject if name else PLAIN_SUBJECT
        with attached(pipe, attachment):
            sample = generate(pipe, filled(prompt, subject), seed, steps, guidance, side)
        label = f"{method} (weight {weight:g})" if method == "LoRA" else method
        images.append((sample.image, f"{label}: {sample.prompt}"))
    footprints = [concept_footprint(name) for name in (TEXTUAL_INVERSION, STYLE_LORA, DREAMBOOTH_LORA,
                                                       CUSTOM_DIFFUSION)]
    return AllMethodsResult(images, footprints, footprint_chart(footprints, unet_block_parameters(base.unet)), seed)


# ---- files from elsewhere (a trained one, or a download) ---------------------------------------------

LORA_SUFFIXES = (".lora_A.weight", ".lora_B.weight", ".lora.down.weight", ".lora.up.weight", "_lora.down.weight",
                 "_lora.up.weight")


def lora_module(key: str) -> tuple[str, str, bool]:
    """(model, module path, is the down/A factor) of a diffusers/peft-style LoRA key."""
    suffix = next(s for s in LORA_SUFFIXES if key.endswith(s))
    path = key[: -len(suffix)].replace(".processor.", ".")
    if suffix.startswith("_lora"):  # 2023 attention-processor keys: to_q_lora, to_out_lora
        path += ".0" if path.endswith("to_out") else ""
    model, _, path = path.partition(".")
    return model, path, "lora_A" in suffix or "down" in suffix


def check_lora_fits(state_dict: dict[str, torch.Tensor], pipe: Any) -> None:
    """Refuse, naming the mismatch, a LoRA whose layers or sizes are not this base's (SDXL, SD-2...)."""
    for key, tensor in state_dict.items():
        if not key.endswith(LORA_SUFFIXES):
            continue
        model, path, down = lora_module(key)
        try:
            module = getattr(pipe, model).get_submodule(path)
        except AttributeError:
            raise UserError(f"This LoRA was made for another base model: it adapts `{path}` of the {model}, a "
                            "layer this SD-1.5 base does not have.") from None
        expected, found = (module.in_features, tensor.shape[1]) if down else (module.out_features, tensor.shape[0])
        if expected != found:
            raise UserError(f"This LoRA was made for another base model: `{path}` of the {model} has {expected} "
                            f"features here but {found} in the file (an SDXL or SD-2 LoRA does not fit SD-1.5).")


def uploaded_attachment(path: Any, token: str, pipe: Any, weight: float) -> tuple[Attachment, dict, str]:
    """A LoRA or textual-inversion file (as trained in this tab) → attachment, its weights and its subject."""
    if not path:
        raise UserError("Upload a .safetensors file (a LoRA or a textual inversion trained in this tab) first.")
    if not str(path).endswith((".safetensors", ".bin")):
        raise UserError("Upload a .safetensors (or a diffusers .bin) weights file.")
    try:
        weights = read_weights(path)
    except Exception:
        raise UserError("Could not read this file as LoRA or textual-inversion weights (.safetensors).") from None
    tensors = {k: v for k, v in weights.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UserError("The file holds no weights.")
    if any(key.endswith(LORA_SUFFIXES) for key in tensors):
        state = unet_prefixed(tensors)
        check_lora_fits(state, pipe)
        return Attachment(loras={"uploaded": (state, weight)}), {"file": state}, token.strip() or PLAIN_SUBJECT
    width = pipe.text_encoder.get_input_embeddings().weight.shape[1]
    if len(tensors) == 1 and next(iter(tensors.values())).shape[-1] == width:
        name, vector = next(iter(tensors.items()))
        return Attachment(tokens={name: vector}), {"file": tensors}, token.strip() or name
    if len(tensors) == 1:
        raise UserError(f"This textual inversion was made for another base model: its vector has "
                        f"{next(iter(tensors.values())).shape[-1]} numbers, this base's token embeddings {width}.")
    raise UserError("This file is neither a LoRA (keys with lora_A/lora_B or lora.down/lora.up) nor a "
                    "textual inversion (one token → one vector).")


# ---- presentation -------------------------------------------------------------------------------

def human_bytes(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.3g} {unit}" if unit != "B" else f"{count} B"
        count /= 1000
    return ""


FOOTPRINT_HEADERS = ["method", "parameters added/changed", "file size", "touches"]  # footprint_rows' columns


def footprint_rows(footprints: list[Footprint]) -> list[list[Any]]:
    return [[f.method, f"{f.parameters:,}", human_bytes(f.file_bytes), f.touches] for f in footprints]


def summary(result: PersonalisationResult) -> str:
    adapters = f" · adapters during the run: {', '.join(result.adapters)}" if result.adapters else ""
    nearest = ("\n\nNearest vocabulary words of the new token (cosine): " +
               ", ".join(f"`{word}` {score:.2f}" for word, score in result.nearest)) if result.nearest else ""
    return (f"**{result.method}** · prompt `{result.prompt}` · plain SD: `{result.plain_prompt}` · seed {result.seed}"
            f"{adapters} · latent distance from plain SD: **{result.latent_distance:.3f}** · "
            f"{result.seconds:.1f} s. Everything attached is removed after the run.{nearest}")


# ---- training a small one in class ----------------------------------------------------------------

TRAIN_METHODS = (TI, LORA)
DEFAULT_LEARNING_RATE = {TI: 5e-3, LORA: 1e-3}  # the CPU recipe; the diffusers LoRA examples use 1e-4 at 512²


@dataclass
class TrainingProgress:
    method: str
    step: int
    steps: int
    losses: list[float]
    probe_losses: list[tuple[int, float]]  # (step, loss on fixed noise draws), from step 0
    samples: list[tuple[Image.Image, str]]  # every `sample_every` steps
    plot: Image.Image  # the loss curve so far
    sample_prompt: str  # the prompt the samples use (the trained concept in it)
    seed: int
    weights: dict[str, torch.Tensor]  # at the end: the file's tensors
    seconds: float

    @property
    def done(self) -> bool:
        return self.step == self.steps


def training_photos(photos: Any) -> list[Image.Image]:
    if photos is None or (isinstance(photos, (list, tuple)) and not photos):
        raise UserError("Upload 3 to 10 photos of your concept (one object or one style, different views).")
    photos = list(photos) if isinstance(photos, (list, tuple)) else [photos]
    if len(photos) > LIMITS.max_training_photos:
        raise UserError(f"At most {LIMITS.max_training_photos} photos (got {len(photos)}); 3 to 10 are enough.")
    return [rgb_image(photo, f"training photo {index + 1}") for index, photo in enumerate(photos)]


def concept_token(token: Any, method: str, pipe: Any) -> str:
    token = str(token or "").strip()
    if not token or " " in token or len(token) > 40:
        raise UserError("The trigger word must be one word without spaces (e.g. <my-concept>), at most 40 characters.")
    if method == TI and token in pipe.tokenizer.get_vocab():
        raise UserError(f"{token!r} is already a word of the tokenizer; textual inversion needs a new one, "
                        "e.g. <my-concept>.")
    return token


def loss_plot(losses: list[float], probes: list[tuple[int, float]]) -> Image.Image:
    """Loss per step, its running mean over 10 steps, and the loss on fixed noise draws (the probe)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(6, 2.6), dpi=80)
    steps = np.arange(1, len(losses) + 1)
    axis.plot(steps, losses, alpha=0.4, label="loss")
    if len(losses) >= 10:
        axis.plot(steps[9:], np.convolve(losses, np.ones(10) / 10, mode="valid"), label="mean of 10")
    axis.plot(*zip(*probes), "o-", color="black", label="same noise draws (probe)")
    axis.set_xlabel("step")
    axis.set_ylabel("‖ε − ε̂‖²")
    axis.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return Image.open(buffer).convert("RGB")


def run_training(photos: Any, method: str = TI, steps: Any = 100, learning_rate: Any = None, rank: Any = 4,
                 token: Any = "<my-concept>", class_word: Any = "toy", prior_weight: Any = 0.0, seed: Any = 0,
                 sample_every: Any = 25, resolution: Any = None, sample_steps: Any = None,
                 progress: ProgressFn | None = None) -> Iterator[TrainingProgress]:
    """Train textual inversion or LoRA on the photos, on the shared base (attached only while training),
    yielding the loss curve after each step and a sample every `sample_every` steps."""
    images = training_photos(photos)
    if method not in TRAIN_METHODS:
        raise UserError(f"Unknown training method {method!r}; choose {' or '.join(TRAIN_METHODS)}.")
    steps = number_in_range(steps, "The step budget", 1, LIMITS.max_training_steps, whole=True)
    learning_rate = number_in_range(learning_rate or DEFAULT_LEARNING_RATE[method], "The learning rate", 1e-6, 0.1)
    rank = number_in_range(rank, "The LoRA rank", 1, 64, whole=True)
    class_word = prompt_text(class_word, "the class of your concept (toy, dog, painting ...)", limit=40)
    prior_weight = number_in_range(prior_weight, "The prior-preservation weight λ", 0, 2)
    seed = resolve_seed(seed)
    sample_every = number_in_range(sample_every, "Sample every", 1, LIMITS.max_training_steps, whole=True)
    side = number_in_range(resolution or default_resolution(), "The training resolution", 64, 768, whole=True)
    if side % 8:
        raise UserError(f"The training resolution must be a multiple of 8; got {side}.")
    sample_steps = number_in_range(sample_steps or (2 if models.model_settings.profile == "tiny" else 20),
                                   "The sample steps", 1, LIMITS.max_steps, whole=True)
    pipe = sampling_pipeline(models.get(SD15, progress))
    token = concept_token(token, method, pipe)
    prompt = "a photo of a {}".format(token if method == TI else f"{token} {class_word}")
    started = time.perf_counter()
    samples: list[tuple[Image.Image, str]] = []
    updates = train_concept(pipe, images, method, steps, learning_rate, rank, token, class_word, seed, side,
                            sample_every, lambda text: generate(pipe, text, seed, sample_steps, 7.5, side).image,
                            prior_weight)
    for update in updates:
        if update.sample is not None:
            samples.append((update.sample, f"step {update.step}"))
        if progress is not None:
            progress(update.step / steps, desc=f"{method}: step {update.step}/{steps}, loss {update.losses[-1]:.3f}")
        if update.sample is not None or update.step == steps:
            yield TrainingProgress(method, update.step, steps, update.losses, update.probe_losses, list(samples),
                                   loss_plot(update.losses, update.probe_losses), prompt, seed, update.weights,
                                   time.perf_counter() - started)


def training_summary(result: TrainingProgress) -> str:
    losses = result.losses
    fifth = max(1, len(losses) // 5)
    (_, first), (_, now) = result.probe_losses[0], result.probe_losses[-1]
    trend = f" · loss on the same noise draws: {first:.4f} before, **{now:.4f}** now"
    if result.done:
        trend += (f" · mean training loss, first 20 %: **{np.mean(losses[:fifth]):.4f}**, last 20 %: "
                  f"**{np.mean(losses[-fifth:]):.4f}**")
    return (f"**{result.method}**, step {result.step}/{result.steps} ({result.seconds:.1f} s) · samples: "
            f"`{result.sample_prompt}`, seed {result.seed}{trend}. The shared base is left as it was.")


def build_ui() -> None:
    import gradio as gr

    gr.Markdown(
        "Four ways to teach SD a concept, told apart by **what they change**: textual inversion learns one token "
        "embedding (KB), LoRA a low-rank update of the attention weights (MB), DreamBooth the whole UNet (GB; shipped "
        "as DreamBooth-LoRA), Custom Diffusion the cross-attention K/V plus new tokens. `{}` in the prompt is replaced "
        "by each method's concept (plain SD: *a cat*). Everything is attached for the run and removed after it.")
    with gr.Tabs():
        with gr.Tab("One method"):
            one = _one_method_tab()
        with gr.Tab("All methods, one prompt"):
            every = _all_methods_tab()
        with gr.Tab("Train your own"):
            own = _train_tab()
    # Wired once every sub-tab is built, so the page's events keep their order: the Examples' first.
    _wire_one_method(one)
    _wire_all_methods(every, one)
    _wire_training(own, one)


def _one_method_tab() -> SimpleNamespace:
    """Plain SD beside SD with one method (or an uploaded file) attached; its steps, guidance and resolution
    serve the other sub-tabs too."""
    import gradio as gr

    from demos.shared.widgets import RESULT, seed_controls

    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt template ({} = the concept)")
            method = gr.Radio([*METHODS, UPLOADED], value="LoRA", label="Method", elem_id="pers-method")
            lora_weight = gr.Slider(0, 1.5, value=1.0, step=0.05, label="LoRA weight (0 = plain SD)",
                                    elem_id="pers-lora-weight")
            dreambooth_weight = gr.Slider(0, 1.5, value=0.0, step=0.05,
                                          label="Mix in the DreamBooth-LoRA (weight; LoRA only)")
            with gr.Accordion("Your own file (.safetensors from the training tab)", open=False):
                uploaded = gr.File(label="LoRA or textual inversion", file_types=[".safetensors"], type="filepath")
                uploaded_token = gr.Textbox("", label="Subject for {} (default: the file's token)")
            steps = gr.Slider(1, LIMITS.max_steps, value=4 if models.model_settings.profile == "tiny" else 30,
                              step=1, label="Steps (DDIM)")
            guidance = gr.Slider(0, 15, value=7.5, step=0.5, label="Guidance scale (CFG)")
            resolution = gr.Slider(64, 768, value=default_resolution(), step=8, label="Resolution")
            seed, randomize = seed_controls()
            run = gr.Button("Generate", variant="primary")
        with gr.Column():
            with gr.Row():
                plain_image = gr.Image(label="Plain SD", format="png", height=220, elem_classes=RESULT)
                method_image = gr.Image(label="With the method", format="png", height=220, elem_classes=RESULT)
            info = gr.Markdown(elem_id="pers-info")
            table = gr.Dataframe(headers=FOOTPRINT_HEADERS, label="What it changes", interactive=False)
    gr.Examples([[DEFAULT_PROMPT, "textual inversion"], ["a watercolor of {}", "Custom Diffusion"],
                 ["{} in a bucket", "DreamBooth-LoRA"]], inputs=[prompt, method])
    return SimpleNamespace(
        prompt=prompt, method=method, lora_weight=lora_weight, dreambooth_weight=dreambooth_weight, uploaded=uploaded,
        uploaded_token=uploaded_token, steps=steps, guidance=guidance, resolution=resolution, seed=seed,
        randomize=randomize, run=run, plain_image=plain_image, method_image=method_image, info=info, table=table)


def _wire_one_method(one: SimpleNamespace) -> None:
    """Generate: the /personalise endpoint."""
    import gradio as gr

    from demos.shared.handlers import user_errors

    @user_errors
    def one_for_ui(prompt, method, lora_weight, dreambooth_weight, steps, guidance, resolution, seed, randomize,
                   uploaded=None, uploaded_token="", progress=gr.Progress()):  # the upload is optional for the API too
        result = run_personalisation(prompt, method, lora_weight, dreambooth_weight, resolve_seed(seed, randomize),
                                     steps, guidance, resolution, uploaded, uploaded_token, progress)
        return result.plain, result.image, summary(result), footprint_rows([result.footprint]), result.seed

    one.run.click(one_for_ui, inputs=[one.prompt, one.method, one.lora_weight, one.dreambooth_weight, one.steps,
                                      one.guidance, one.resolution, one.seed, one.randomize, one.uploaded,
                                      one.uploaded_token],
                  outputs=[one.plain_image, one.method_image, one.info, one.table, one.seed], api_name="personalise")


def _all_methods_tab() -> SimpleNamespace:
    """Every method on one prompt and seed, with a chart of the parameters each changes per block."""
    import gradio as gr

    from demos.shared.widgets import seed_controls

    with gr.Row():
        with gr.Column(scale=1):
            prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt template ({} = the concept)")
            seed, randomize = seed_controls()
            run = gr.Button("Run every method", variant="primary")
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Plain SD · TI · LoRA 0 / 0.5 / 1 · DreamBooth-LoRA · Custom Diffusion",
                                 columns=7, height=200, format="png")
            chart = gr.Image(label="Parameters changed per block (log scale)", format="png")
            table = gr.Dataframe(headers=FOOTPRINT_HEADERS, interactive=False)
    return SimpleNamespace(prompt=prompt, seed=seed, randomize=randomize, run=run, gallery=gallery, chart=chart,
                           table=table)


def _wire_all_methods(every: SimpleNamespace, one: SimpleNamespace) -> None:
    """Run every method: the /personalise_all endpoint, with One method's steps, guidance and resolution."""
    import gradio as gr

    from demos.shared.handlers import user_errors

    @user_errors
    def all_for_ui(prompt, steps, guidance, resolution, seed, randomize, progress=gr.Progress()):
        result = run_all_methods(prompt, resolve_seed(seed, randomize), steps, guidance, resolution, progress)
        return result.images, result.chart, footprint_rows(result.footprints), result.seed

    every.run.click(all_for_ui, inputs=[every.prompt, one.steps, one.guidance, one.resolution, every.seed,
                                        every.randomize],
                    outputs=[every.gallery, every.chart, every.table, every.seed], api_name="personalise_all")


def _train_tab() -> SimpleNamespace:
    """Textual inversion or LoRA trained on the user's photos, watched step by step."""
    import gradio as gr

    from demos.shared.widgets import seed_controls

    tiny = models.model_settings.profile == "tiny"
    gr.Markdown(
        "Upload 3–10 photos of one object or style. **Textual inversion** learns one new word's vector; "
        "**LoRA** learns rank-r updates of the UNet's attention, bound to *trigger word + class*. The loss is "
        "the noise-prediction error of a random noise level. **Prior preservation** (DreamBooth) is off by "
        "default: it first makes the frozen model draw the class (*a photo of a toy*) and adds that loss "
        "times λ, so the class does not drift toward your photos — it doubles the cost per step, and a "
        "few hundred LoRA steps rarely need it. On a CPU the tiny profile trains in seconds; on a GPU the real base.")
    with gr.Row():
        with gr.Column():
            photos = gr.File(label="Photos (3–10)", file_count="multiple", file_types=["image"], type="filepath")
            method = gr.Radio(list(TRAIN_METHODS), value=TI, label="What to train")
            with gr.Row():
                token = gr.Textbox("<my-concept>", label="Trigger word")
                class_word = gr.Textbox("toy", label="Class (TI starts from it)")
            steps = gr.Slider(1, LIMITS.max_training_steps, value=40 if tiny else 400, step=1, label="Step budget")
            with gr.Row():
                learning_rate = gr.Number(0, label="Learning rate (0 = TI 5e-3, LoRA 1e-3)", minimum=0)
                rank = gr.Slider(1, 64, value=4, step=1, label="LoRA rank")
            with gr.Row():
                prior_weight = gr.Slider(0, 2, value=0, step=0.1, label="Prior preservation λ (0 = off)")
                sample_every = gr.Slider(1, LIMITS.max_training_steps, value=20 if tiny else 100, step=1,
                                         label="Sample every N steps")
            seed, randomize = seed_controls()
            train = gr.Button("Train", variant="primary")
        with gr.Column():
            loss_image = gr.Image(label="Loss", format="png", elem_id="pers-loss")
            info = gr.Markdown(elem_id="pers-train-info")
            samples = gr.Gallery(label="Samples while training", columns=5, height=160, format="png")
            trained_file = gr.File(label="Trained weights (.safetensors): load them back under One method")
    gr.Examples([[[str(ASSETS / name) for name in ("chelsea.jpg", "reference_cat.jpg", "coffee.jpg")]]],
                inputs=[photos], label="Example photos")
    return SimpleNamespace(
        photos=photos, method=method, token=token, class_word=class_word, steps=steps, learning_rate=learning_rate,
        rank=rank, prior_weight=prior_weight, sample_every=sample_every, seed=seed, randomize=randomize, train=train,
        loss_image=loss_image, info=info, samples=samples, trained_file=trained_file)


def _wire_training(own: SimpleNamespace, one: SimpleNamespace) -> None:
    """Train: the /train_concept endpoint, streaming the loss and samples; trains at One method's resolution."""
    import gradio as gr

    from demos.shared.handlers import user_errors

    @user_errors
    def train_for_ui(photos, method, token, class_word, steps, learning_rate, rank, prior_weight, sample_every, resolution,
                     seed, randomize, progress=gr.Progress()):
        seed = resolve_seed(seed, randomize)
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        for result in run_training(photos, method, steps, learning_rate, rank, token, class_word, prior_weight, seed,
                                   sample_every, resolution, progress=progress):
            path = str(save_weights(method, result.weights, tempfile.mkdtemp(dir=OUTPUT_DIR))) if result.done else None
            yield result.plot, training_summary(result), result.samples, path, seed

    own.train.click(train_for_ui, inputs=[own.photos, own.method, own.token, own.class_word, own.steps,
                                          own.learning_rate, own.rank, own.prior_weight, own.sample_every,
                                          one.resolution, own.seed, own.randomize],
                    outputs=[own.loss_image, own.info, own.samples, own.trained_file, own.seed],
                    api_name="train_concept")


# ---- Compare ------------------------------------------------------------------------------------

def _compare(method: str, lora_weight: float = 1.0):
    """A Compare cell through `run_personalisation`: `{}` in the prompt becomes the method's concept."""
    def run(prompt: str, seed: int = 0, steps: int = 20, **_unused: Any) -> Output:
        return Output(image=run_personalisation(prompt, method, lora_weight, 0.0, seed, steps).image)
    return run


COMPARE_METHODS = [
    Method(IMAGE, "SD-1.5 plain (personalisation baseline)", _compare(PLAIN), {"seed": 0, "steps": 20}),
    Method(IMAGE, "SD-1.5 + textual inversion <cat-toy>", _compare("textual inversion"), {"seed": 0, "steps": 20}),
    *[Method(IMAGE, f"SD-1.5 + LoRA (weight {w:g})", _compare("LoRA", w), {"seed": 0, "steps": 20})
      for w in (0.0, 0.5, 1.0)],
    Method(IMAGE, "SD-1.5 + DreamBooth-LoRA (sks dog)", _compare("DreamBooth-LoRA"), {"seed": 0, "steps": 20}),
    Method(IMAGE, "SD-1.5 + Custom Diffusion <new1> <new2>", _compare("Custom Diffusion"), {"seed": 0, "steps": 20}),
]
