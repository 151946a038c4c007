"""Global conditions for Composer-style composition on the shared SD-1.5 base (Composer itself published no
weights): T2I-Adapter's colour-palette adapter and IP-Adapter's image prompt.

Neither handle is a pipeline. The colour adapter is a `T2IAdapter` (a light adapter, published as a pickle only,
read with `weights_only=True`) that the Composition tab joins to the sketch and depth adapters in one
`MultiAdapter`. IP-Adapter is its published state dict (`image_proj` + `ip_adapter`, split as diffusers splits
the safetensors file) and its CLIP image encoder; the tab attaches it to the shared UNet for one run with
diffusers' `load_ip_adapter` and removes it after (`models/pipelines/composition.py`). The tiny builders write
the same files, classes and key names at the tiny base's sizes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .hub import named_files
from .registry import LoadContext, ModelSpec

COLOR_ADAPTER = "t2iadapter-color-sd14"
IP_ADAPTER = "ip-adapter-sd15"
IP_ADAPTER_FOLDER = "models"
IP_ADAPTER_WEIGHTS = "ip-adapter_sd15.safetensors"  # the repository also has the same weights as a .bin pickle
IMAGE_ENCODER_FOLDER = "models/image_encoder"
IP_ADAPTER_FILES = (f"{IP_ADAPTER_FOLDER}/{IP_ADAPTER_WEIGHTS}", f"{IMAGE_ENCODER_FOLDER}/config.json",
                    f"{IMAGE_ENCODER_FOLDER}/model.safetensors")


# ---- the colour-palette T2I-Adapter -----------------------------------------------------------------

def load_color_adapter(context: LoadContext) -> Any:
    """The published light adapter (config.json + pickled diffusion_pytorch_model.bin)."""
    from diffusers import T2IAdapter

    return T2IAdapter.from_pretrained(context.source, **context.weights()).to(context.device).eval()


def build_tiny_color_adapter(folder: Path) -> None:
    """A light adapter like the published one (3 input channels, 4 residual blocks per level there), whose
    features match the tiny UNet's down blocks: channels [16, 16, 32] give features of 16, 16, 32, 32."""
    import torch
    from diffusers import T2IAdapter

    from .stable_diffusion import tiny_unet_config

    torch.manual_seed(6)
    channels = tiny_unet_config()["block_out_channels"]
    T2IAdapter(in_channels=3, channels=list(channels[:3]), num_res_blocks=1, downscale_factor=8,
               adapter_type="light_adapter").save_pretrained(folder, safe_serialization=True)


# ---- IP-Adapter -------------------------------------------------------------------------------------

@dataclass
class IPAdapterHandle:
    """IP-Adapter's weights as `load_ip_adapter` takes a state dict, its image encoder and the processor
    diffusers would make for it (the repository publishes no preprocessor config)."""

    state_dict: dict[str, dict[str, Any]]  # {"image_proj": {...}, "ip_adapter": {...}}
    image_encoder: Any  # CLIPVisionModelWithProjection
    feature_extractor: Any  # CLIPImageProcessor at the encoder's image size


def split_ip_adapter_file(path: str) -> dict[str, dict[str, Any]]:
    """The published safetensors file as diffusers' `load_ip_adapter` reads it: `image_proj.*` and
    `ip_adapter.*` keys into two dicts."""
    from safetensors import safe_open

    state: dict[str, dict[str, Any]] = {"image_proj": {}, "ip_adapter": {}}
    with safe_open(path, framework="pt", device="cpu") as weights:
        for key in weights.keys():
            part, _, rest = key.partition(".")
            if part in state:
                state[part][rest] = weights.get_tensor(key)
    return state


def load_ip_adapter(context: LoadContext) -> IPAdapterHandle:
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    state = split_ip_adapter_file(context.file(f"{IP_ADAPTER_FOLDER}/{IP_ADAPTER_WEIGHTS}"))
    state = {part: {key: value.to(context.device, context.dtype) for key, value in tensors.items()}
             for part, tensors in state.items()}
    encoder = CLIPVisionModelWithProjection.from_pretrained(context.source, subfolder=IMAGE_ENCODER_FOLDER,
                                                            **context.weights())
    side = encoder.config.image_size
    return IPAdapterHandle(state, encoder.to(context.device).eval(), CLIPImageProcessor(size=side, crop_size=side))


def tiny_image_encoder() -> Any:
    """CLIP ViT-H/14's vision tower with projection (h94's `models/image_encoder`) at toy width, 224 px."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from .clip import IMAGE_SIZE

    config = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=IMAGE_SIZE, patch_size=32, projection_dim=16)
    return CLIPVisionModelWithProjection(config)


def tiny_ip_adapter_state(projection_dim: int, seed: int = 7) -> dict[str, Any]:
    """IP-Adapter SD-1.5's keys at the tiny UNet's sizes: `image_proj.proj` (image embedding → 4 extra tokens
    of the text width) and `image_proj.norm`; for every cross-attention layer, counted 1, 3, 5, ... in the
    order of the UNet's processors, `ip_adapter.<n>.to_k_ip` / `to_v_ip` (text width → the layer's width).
    Random (not zero) so that, like a trained one, it changes the output."""
    import torch
    from diffusers import UNet2DConditionModel

    from .stable_diffusion import tiny_unet_config

    config = tiny_unet_config()
    width, tokens = config["cross_attention_dim"], 4
    generator = torch.Generator().manual_seed(seed)

    def random(*shape: int) -> Any:
        return torch.randn(*shape, generator=generator) * 0.3

    state = {"image_proj.proj.weight": random(width * tokens, projection_dim),
             "image_proj.proj.bias": random(width * tokens),
             "image_proj.norm.weight": torch.ones(width), "image_proj.norm.bias": torch.zeros(width)}
    unet = UNet2DConditionModel(**config)
    cross = [name for name in unet.attn_processors if not name.endswith("attn1.processor")]
    for count, name in enumerate(cross):
        hidden = unet.get_submodule(name.rsplit(".", 1)[0]).to_q.out_features
        state[f"ip_adapter.{2 * count + 1}.to_k_ip.weight"] = random(hidden, width)
        state[f"ip_adapter.{2 * count + 1}.to_v_ip.weight"] = random(hidden, width)
    return state


def build_tiny_ip_adapter(folder: Path) -> None:
    """The published layout: `models/ip-adapter_sd15.safetensors` (fp16, as published) and the image encoder
    saved by `save_pretrained` in `models/image_encoder/`."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(7)
    encoder = tiny_image_encoder()
    encoder.save_pretrained(folder / IMAGE_ENCODER_FOLDER)
    state = tiny_ip_adapter_state(encoder.config.projection_dim)
    (folder / IP_ADAPTER_FOLDER).mkdir(parents=True, exist_ok=True)
    save_file({key: value.half().contiguous() for key, value in state.items()},
              str(folder / IP_ADAPTER_FOLDER / IP_ADAPTER_WEIGHTS))


SPECS = [
    ModelSpec(
        name=COLOR_ADAPTER, checkpoint="TencentARC/t2iadapter_color_sd14v1",
        loader=load_color_adapter, tiny_builder=build_tiny_color_adapter,
        description="T2I-Adapter colour palette (light adapter, trained on SD-1.4), 18.7M parameters",
    ),
    ModelSpec(
        name=IP_ADAPTER, checkpoint="h94/IP-Adapter",
        loader=load_ip_adapter, tiny_builder=build_tiny_ip_adapter, files=named_files(*IP_ADAPTER_FILES),
        description="IP-Adapter for SD-1.5: image prompt through decoupled cross-attention (22M) + its CLIP "
                    "ViT-H/14 image encoder (632M)",
    ),
]
