"""Personalisation concept files for the shared SD-1.5 base: a textual inversion, a style LoRA, a
DreamBooth-LoRA and Custom Diffusion's two-concept weights.

Each handle is only the published files' tensors, `{file name: state dict}` — never a pipeline. The
Personalisation tab attaches them to the shared `sd15` base for one run through diffusers' own
loaders (`load_textual_inversion`, `load_lora_weights`, `UNet2DConditionModel.load_attn_procs`) and
removes them after. The tiny builders write the same file names and key names at the tiny base's
sizes, so the tiny profile goes through the very same loader code.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .hub import named_files
from .registry import LoadContext, ModelSpec

TEXTUAL_INVERSION = "ti-cat-toy"
STYLE_LORA = "lora-pokemon"
DREAMBOOTH_LORA = "dreambooth-lora-dog"
CUSTOM_DIFFUSION = "custom-diffusion-cat-pot"
LORA_FILE = "pytorch_lora_weights.bin"  # diffusers' LoRA scripts of 2023 wrote pickles under this name
CUSTOM_DIFFUSION_FILE = "pytorch_custom_diffusion_weights.bin"
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]  # the diffusers LoRA scripts' default (rank 4)


@dataclass(frozen=True)
class Concept:
    """What a concept file is and how a prompt calls it."""

    method: str  # textual inversion | LoRA | DreamBooth-LoRA | Custom Diffusion
    files: tuple[str, ...]
    tokens: tuple[str, ...]  # new words it adds to the tokenizer (one per token file)
    subject: str  # the phrase that fills "{}" in a prompt template
    trained_on: str  # the base model named in its model card


CONCEPTS = {
    TEXTUAL_INVERSION: Concept("textual inversion", ("learned_embeds.bin",), ("<cat-toy>",), "a <cat-toy> toy",
                               "stable-diffusion-v1-5"),
    STYLE_LORA: Concept("LoRA", (LORA_FILE,), (), "a cat", "CompVis/stable-diffusion-v1-4"),  # a style: no trigger
    DREAMBOOTH_LORA: Concept("DreamBooth-LoRA", (LORA_FILE,), (), "a sks dog", "runwayml/stable-diffusion-v1-5"),
    CUSTOM_DIFFUSION: Concept("Custom Diffusion", (CUSTOM_DIFFUSION_FILE, "<new1>.bin", "<new2>.bin"),
                              ("<new1>", "<new2>"), "the <new1> cat sculpture in the style of a <new2> wooden pot",
                              "CompVis/stable-diffusion-v1-4"),
}


def read_weights(path: str | Path) -> dict[str, Any]:
    """A safetensors file, or a pickle read with `weights_only=True` (tensors and dicts only, no code)."""
    import torch
    from safetensors.torch import load_file

    if str(path).endswith(".safetensors"):
        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def unload_tokens(pipe: Any, tokens: list[str]) -> None:
    """Remove added tokens (textual inversion, a concept being trained) from a shared SD pipeline.
    diffusers 0.42 does it by rebuilding a fast tokenizer's backend, which drops the decode wrapper
    CLIPTokenizer puts on it, so the wrapper is put back: else every tab would read "cat" back as "cat</w>"."""
    pipe.unload_textual_inversion(tokens)
    if hasattr(pipe.tokenizer, "_wrap_decode_method_backend_tokenizer"):
        pipe.tokenizer._wrap_decode_method_backend_tokenizer()


def _to(weights: dict[str, Any], device: Any, dtype: Any) -> dict[str, Any]:
    """Tensors cloned onto the device (a token file's row is a view of a whole saved table: copy the row
    only); Custom Diffusion's empty entries (layers it leaves alone) are kept."""
    return {key: _to(value, device, dtype) if isinstance(value, dict) else value.to(device, dtype).clone()
            for key, value in weights.items()}


def concept_loader(name: str) -> Callable[[LoadContext], dict[str, dict[str, Any]]]:
    """The loader of one concept: `{file name: state dict}` for each of its published files."""
    def load(context: LoadContext) -> dict[str, dict[str, Any]]:
        return {file: _to(read_weights(context.file(file)), context.device, context.dtype)
                for file in CONCEPTS[name].files}
    return load


# ---- tiny builders: the published layouts at the tiny base's sizes --------------------------------

def _tiny_sizes() -> tuple[dict, int, int]:
    """The tiny SD-1.5 UNet config, text width and vocabulary size."""
    from .clip import tiny_text_config, tiny_tokenizer
    from .stable_diffusion import tiny_unet_config

    text = tiny_text_config(tiny_tokenizer())
    return tiny_unet_config(), text["hidden_size"], text["vocab_size"]


def build_tiny_textual_inversion(folder: Path) -> None:
    """sd-concepts-library layout: `learned_embeds.bin` = `{"<token>": tensor[width]}`."""
    import torch

    _, width, _ = _tiny_sizes()
    torch.save({"<cat-toy>": torch.randn(width, generator=torch.Generator().manual_seed(1))},
               folder / "learned_embeds.bin")


def old_format_lora(seed: int, rank: int = 4) -> dict[str, Any]:
    """A rank-`rank` LoRA on every attention projection of the tiny UNet, keyed as diffusers' 2023
    `save_attn_procs` wrote it (`...attn1.processor.to_q_lora.down.weight`), B random (not zero) so
    that it visibly changes the output."""
    import torch
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    config, _, _ = _tiny_sizes()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**config)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=LORA_TARGETS))
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    renamed = {}
    for key, tensor in get_peft_model_state_dict(unet).items():
        module, projection, factor, _ = key.rsplit(".", 3)
        if projection == "0":  # to_out.0
            module, projection = module.rsplit(".", 1)[0], "to_out"
        direction = "down" if factor == "lora_A" else "up"
        renamed[f"{module}.processor.{projection}_lora.{direction}.weight"] = tensor.contiguous()
    return renamed


def build_tiny_style_lora(folder: Path) -> None:
    import torch

    torch.save(old_format_lora(seed=2), folder / LORA_FILE)


def build_tiny_dreambooth_lora(folder: Path) -> None:
    import torch

    torch.save(old_format_lora(seed=3), folder / LORA_FILE)


def build_tiny_custom_diffusion(folder: Path) -> None:
    """`train_custom_diffusion.py`'s output: new K/V for every cross-attention (`attn2`) saved by
    `save_attn_procs` (self-attention layers as empty entries), and one `<newN>.bin` per modifier token
    holding a row of the whole embedding table (saved as a view, so the file carries the full table)."""
    import torch
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import CustomDiffusionAttnProcessor

    config, width, vocabulary = _tiny_sizes()
    torch.manual_seed(4)
    unet = UNet2DConditionModel(**config)
    processors = {}
    for name, attention in ((n, unet.get_submodule(n.rsplit(".", 1)[0])) for n in unet.attn_processors):
        cross = name.endswith("attn2.processor")
        processors[name] = CustomDiffusionAttnProcessor(
            train_kv=cross, train_q_out=False, hidden_size=attention.to_q.out_features,
            cross_attention_dim=width if cross else None)
    unet.set_attn_processor(processors)
    unet.save_attn_procs(folder, weight_name=CUSTOM_DIFFUSION_FILE, safe_serialization=False)
    table = torch.randn(vocabulary + 2, width, generator=torch.Generator().manual_seed(5))
    for offset, token in enumerate(CONCEPTS[CUSTOM_DIFFUSION].tokens):
        torch.save({token: table[vocabulary + offset]}, folder / f"{token}.bin")


SPECS = [
    ModelSpec(
        name=TEXTUAL_INVERSION, checkpoint="sd-concepts-library/cat-toy",
        loader=concept_loader(TEXTUAL_INVERSION), tiny_builder=build_tiny_textual_inversion,
        files=named_files(*CONCEPTS[TEXTUAL_INVERSION].files),
        description="Textual inversion: one learned 768-d token embedding <cat-toy> (4.9 KB; MIT)",
    ),
    ModelSpec(
        name=STYLE_LORA, checkpoint="sayakpaul/sd-model-finetuned-lora-t4",
        loader=concept_loader(STYLE_LORA), tiny_builder=build_tiny_style_lora,
        files=named_files(*CONCEPTS[STYLE_LORA].files),
        description="LoRA rank 4 on the UNet's attention (Pokémon captions, diffusers LoRA script), 0.8M parameters",
    ),
    ModelSpec(
        name=DREAMBOOTH_LORA, checkpoint="patrickvonplaten/lora_dreambooth_dog_example",
        loader=concept_loader(DREAMBOOTH_LORA), tiny_builder=build_tiny_dreambooth_lora,
        files=named_files(*CONCEPTS[DREAMBOOTH_LORA].files),
        description="DreamBooth-LoRA rank 4 for SD-1.5: 'a sks dog' from 5 photos, 0.8M parameters",
    ),
    ModelSpec(
        name=CUSTOM_DIFFUSION, checkpoint="sayakpaul/custom-diffusion-cat-wooden-pot",
        loader=concept_loader(CUSTOM_DIFFUSION), tiny_builder=build_tiny_custom_diffusion,
        files=named_files(*CONCEPTS[CUSTOM_DIFFUSION].files),
        description="Custom Diffusion: cross-attention K/V (19.2M) + tokens <new1> <new2>, cat + wooden pot",
    ),
]
