"""Training a small concept in class: textual inversion (Gal et al. 2022) or LoRA (Hu et al. 2021) on a
few photos, with latent diffusion's noise-prediction loss ‖ε − ε̂(z_t, t, text)‖² (Ho et al. 2020).

Both train *on the shared base* without changing it: textual inversion adds its token to the tokenizer
and learns only that token's vector (a forward hook on the embedding layer puts the fp32 vector in
place of the new row, so no other row can move), LoRA adds a named peft adapter to the UNet. The
token, the adapter and the `requires_grad` flags are removed / restored in `finally`, whatever happens.
DreamBooth's prior preservation (Ruiz et al. 2023) can be added to either: the frozen model first draws
images of the class ("a photo of a dog"), and their loss, weighted by λ, keeps the class from drifting.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image, ImageOps

from ..personalisation import unload_tokens

TEXTUAL_INVERSION = "textual inversion"
LORA = "LoRA"
ADAPTER = "trained"
PROBE_DRAWS = 4  # fixed noise draws per photo for the probe loss
BATCH = 4  # photos (with their own noise level each) per step: the diffusers scripts' effective batch
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
# A few of the diffusers textual_inversion.py object templates.
TEMPLATES = ("a photo of a {}", "a rendering of a {}", "a cropped photo of the {}", "a close-up photo of a {}",
             "a bright photo of the {}", "a good photo of a {}")


@dataclass
class TrainingUpdate:
    step: int  # steps done
    steps: int
    losses: list[float]  # one per step so far
    probe_losses: list[tuple[int, float]]  # (step, loss on fixed noise draws): before training and at each sample
    sample: Image.Image | None = None  # the current weights' sample, every `sample_every` steps and at the end
    weights: dict[str, torch.Tensor] = field(default_factory=dict)  # at the end: what a file would hold


def instance_prompt(method: str, token: str, class_word: str) -> str:
    """TI's token stands for the whole object; LoRA binds a rare word to the class, as DreamBooth does."""
    return token if method == TEXTUAL_INVERSION else f"{token} {class_word}"


def pixels(image: Image.Image, side: int) -> torch.Tensor:
    square = ImageOps.fit(image.convert("RGB"), (side, side), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(square, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)


@contextmanager
def frozen(*modules: torch.nn.Module) -> Iterator[None]:
    """Every parameter frozen for the block, then each put back as it was: found again by identity (a LoRA
    wrapper renames `to_q.weight` to `to_q.base_layer.weight` but keeps the tensor) or else by name (adding
    and removing a token replaces the embedding table's tensor)."""
    by_identity = {id(p): p.requires_grad for m in modules for p in m.parameters()}
    by_name = [{name: p.requires_grad for name, p in m.named_parameters()} for m in modules]
    for module in modules:
        module.requires_grad_(False)
    try:
        yield
    finally:
        for module, named in zip(modules, by_name):
            for name, parameter in module.named_parameters():
                parameter.requires_grad_(by_identity.get(id(parameter), named.get(name, False)))


@contextmanager
def new_token(pipe: Any, token: str, initializer: str) -> Iterator[tuple[torch.Tensor, int]]:
    """The token added to the shared tokenizer, with a trainable fp32 vector (initialised from the
    initializer word's embedding) that a hook puts in place of its row; removed afterwards."""
    tokenizer, encoder = pipe.tokenizer, pipe.text_encoder
    initializer_ids = tokenizer.encode(initializer, add_special_tokens=False)
    embeddings = encoder.get_input_embeddings()
    vector = embeddings.weight[initializer_ids].detach().float().mean(0).clone().requires_grad_(True)
    tokenizer.add_tokens(token)
    token_id = tokenizer.convert_tokens_to_ids(token)
    encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    embeddings = encoder.get_input_embeddings()
    embeddings.weight.requires_grad_(False)  # only the vector learns

    def put_vector(_module: Any, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        mask = (inputs[0] == token_id).unsqueeze(-1)
        return torch.where(mask, vector.to(output.dtype), output)
    hook = embeddings.register_forward_hook(put_vector)
    try:
        yield vector, token_id
    finally:
        hook.remove()
        unload_tokens(pipe, [token])


@contextmanager
def lora_adapter(unet: Any, rank: int) -> Iterator[list[torch.nn.Parameter]]:
    """A fresh rank-`rank` LoRA (B = 0: the output starts unchanged) on the UNet's attention, in fp32."""
    from peft import LoraConfig

    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=LORA_TARGETS),
                     adapter_name=ADAPTER)
    try:
        parameters = [p for n, p in unet.named_parameters() if f".{ADAPTER}." in n]
        for parameter in parameters:
            parameter.data = parameter.data.float()
            parameter.requires_grad_(True)
        yield parameters
    finally:
        unet.delete_adapters(ADAPTER)


def lora_file_weights(unet: Any) -> dict[str, torch.Tensor]:
    """The adapter as `save_lora_weights` writes it (diffusers keys under `unet.`)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet, adapter_name=ADAPTER))
    return {f"unet.{key}": value.detach().float().cpu().clone() for key, value in state.items()}


def train_concept(pipe: Any, images: list[Image.Image], method: str, steps: int, learning_rate: float, rank: int,
                  token: str, class_word: str, seed: int, side: int, sample_every: int,
                  sample: Callable[[str], Image.Image], prior_weight: float = 0.0) -> Iterator[TrainingUpdate]:
    """Yield an update after every step (with a sample every `sample_every` steps); the last one carries
    the trained weights and a sample made with them still attached."""
    from diffusers import DDPMScheduler

    unet, encoder, vae = pipe.unet, pipe.text_encoder, pipe.vae
    device, dtype = unet.device, unet.dtype
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    generator = torch.Generator().manual_seed(seed)
    picker = random.Random(seed)
    prompt = instance_prompt(method, token, class_word)
    class_prompt = f"a photo of a {class_word}"
    with torch.no_grad():
        class_images = [sample(class_prompt) for _ in images] if prior_weight > 0 else []
        latents = [vae.encode(pixels(image, side)[None].to(device, dtype)).latent_dist for image in images]
        class_latents = [vae.encode(pixels(image, side)[None].to(device, dtype)).latent_dist
                         for image in class_images]

    def ids(texts: list[str]) -> torch.Tensor:
        return pipe.tokenizer(texts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids.to(device)

    def loss_on(distributions: list[Any], texts: list[str], generator: torch.Generator = generator) -> torch.Tensor:
        """The noise-prediction loss of a batch: each latent noised to its own random t."""
        mean, std = torch.cat([d.mean for d in distributions]), torch.cat([d.std for d in distributions])
        z0 = (mean + std * torch.randn(mean.shape, generator=generator).to(device, dtype)) * vae.config.scaling_factor
        noise = torch.randn(z0.shape, generator=generator).to(device, dtype)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(texts),), generator=generator).to(device)
        z_t = noise_scheduler.add_noise(z0, noise, t)
        target = noise if noise_scheduler.config.prediction_type == "epsilon" else \
            noise_scheduler.get_velocity(z0, noise, t)
        prediction = unet(z_t, t, encoder_hidden_states=encoder(ids(texts))[0]).sample
        return torch.nn.functional.mse_loss(prediction.float(), target.float())

    def probe() -> float:
        """The loss on the same noise draws every time (paired): free of the per-step noise of the training
        loss, so a small improvement shows (textual inversion's single vector moves the loss only a little)."""
        draws = [i for i in range(len(images)) for _ in range(PROBE_DRAWS)]
        with torch.no_grad():
            return loss_on([latents[i] for i in draws], [TEMPLATES[0].format(prompt)] * len(draws),
                           torch.Generator().manual_seed(seed + 1)).item()

    losses: list[float] = []
    with frozen(unet, encoder, vae), (new_token(pipe, token, class_word) if method == TEXTUAL_INVERSION
                                      else lora_adapter(unet, rank)) as trainable:
        parameters = [trainable[0]] if method == TEXTUAL_INVERSION else trainable
        optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
        probes = [(0, probe())]
        for step in range(1, steps + 1):
            batch = [picker.randrange(len(images)) for _ in range(BATCH)]
            with torch.enable_grad():
                loss = loss_on([latents[i] for i in batch], [picker.choice(TEMPLATES).format(prompt) for _ in batch])
                if class_latents:
                    loss = loss + prior_weight * loss_on([class_latents[i] for i in batch], [class_prompt] * BATCH)
                loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            last = step == steps
            picture = None
            if last or step % sample_every == 0:
                picture = sample(TEMPLATES[0].format(prompt))
                probes.append((step, probe()))
            weights = {}
            if last:
                weights = {token: trainable[0].detach().float().cpu().clone()[None]} \
                    if method == TEXTUAL_INVERSION else lora_file_weights(unet)
            yield TrainingUpdate(step, steps, list(losses), list(probes), picture, weights)


def save_weights(method: str, weights: dict[str, torch.Tensor], folder: Any) -> Any:
    """Write trained weights as diffusers does: `learned_embeds.safetensors` ({token: [1, width]}) or
    `pytorch_lora_weights.safetensors` (through `save_lora_weights`)."""
    from pathlib import Path

    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if method == TEXTUAL_INVERSION:
        path = folder / "learned_embeds.safetensors"
        save_file(weights, str(path))
        return path
    from diffusers import StableDiffusionPipeline

    StableDiffusionPipeline.save_lora_weights(
        folder, unet_lora_layers={k.removeprefix("unet."): v for k, v in weights.items()},
        weight_name="pytorch_lora_weights.safetensors", safe_serialization=True)
    return folder / "pytorch_lora_weights.safetensors"
