"""Composer-style composition on the shared SD-1.5 base: local conditions (sketch, depth) and global ones (a
colour palette, an image embedding), each with a weight, in one denoising run.

The three T2I-Adapters (sketch, depth, colour) run as one diffusers `MultiAdapter`: its features are the
weighted sum Σ_i w_i·F_i(c_i), added to the UNet encoder at every step. IP-Adapter attaches to the shared UNet
for the run with diffusers' `load_ip_adapter` (new K/V projections in every cross-attention layer, image tokens
from a projection of the CLIP image embedding) and is always removed after. `StableDiffusionAdapterPipeline`
does not hand image embeddings to the UNet, so while IP-Adapter is on, a forward pre-hook on the UNet adds
them as `added_cond_kwargs`, as `StableDiffusionPipeline` does; the hook goes with the adapter.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from PIL import Image

from ..stable_diffusion import attention_held

PALETTE_FACTOR = 64  # T2I-Adapter's colour condition: the image shrunk 64x, blown up with nearest-neighbour


def palette(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The colour-palette condition at `size` (width, height): the image at that size shrunk 64x (bicubic,
    as T2I-Adapter's `get_cond_color`) to a grid of colour cells, then blown up again with nearest-neighbour,
    so each cell is one flat colour."""
    width, height = size
    picture = image.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    cells = (max(1, width // PALETTE_FACTOR), max(1, height // PALETTE_FACTOR))
    return picture.resize(cells, Image.Resampling.BICUBIC).resize(size, Image.Resampling.NEAREST)


def adapter_pipeline(base: Any, adapters: list[Any]) -> Any:
    """A `StableDiffusionAdapterPipeline` of the shared base's modules with the adapters as one `MultiAdapter`
    (their weights are given per call as `adapter_conditioning_scale`)."""
    from diffusers import MultiAdapter, StableDiffusionAdapterPipeline

    pipe = StableDiffusionAdapterPipeline.from_pipe(base, adapter=MultiAdapter(adapters), dtype=base.dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def image_prompt_pipeline(base: Any, ip: Any) -> Any:
    """The shared base's modules with IP-Adapter's image encoder: what `load_ip_adapter` is called on."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pipe(base, image_encoder=ip.image_encoder,
                                             feature_extractor=ip.feature_extractor, dtype=base.dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def ip_adapter_state(pipe: Any) -> dict[str, Any]:
    """What IP-Adapter leaves on a UNet while attached: its image projection, IP processors, a pre-hook."""
    unet = pipe.unet
    return {"encoder_hid_proj": type(unet.encoder_hid_proj).__name__ if unet.encoder_hid_proj is not None else None,
            "encoder_hid_dim_type": unet.config.encoder_hid_dim_type,
            "processors": sorted({type(p).__name__ for p in unet.attn_processors.values()}),
            "forward_pre_hooks": len(unet._forward_pre_hooks)}


@contextmanager
def image_prompt_attached(base: Any, ip: Any, image: Image.Image, scale: float,
                          guidance: bool) -> Iterator[Any]:
    """IP-Adapter on the shared UNet for one run, with `image`'s embedding fed to every UNet call (the
    zero embedding for the unconditional half when `guidance`), at `scale`; yields the image-prompt pipeline.
    Always removed after, even when the run fails: the hook, the image projection, the IP processors (the
    previous processors are put back, held from other runs meanwhile)."""
    pipe = image_prompt_pipeline(base, ip)
    with attention_held(pipe.unet):
        hook = None
        try:
            pipe.load_ip_adapter({part: dict(tensors) for part, tensors in ip.state_dict.items()},
                                 subfolder=None, weight_name=None, image_encoder_folder=None)
            pipe.set_ip_adapter_scale(scale)
            embeds = pipe.prepare_ip_adapter_image_embeds(
                ip_adapter_image=image, ip_adapter_image_embeds=None, device=pipe.unet.device,
                num_images_per_prompt=1, do_classifier_free_guidance=guidance)
            hook = pipe.unet.register_forward_pre_hook(_feeding(embeds), with_kwargs=True)
            yield pipe
        finally:
            if hook is not None:
                hook.remove()
            if pipe.unet.encoder_hid_proj is not None or pipe.unet.config.encoder_hid_dim_type is not None:
                pipe.unload_ip_adapter()


def _feeding(embeds: list[Any]) -> Any:
    def hook(_module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        kwargs["added_cond_kwargs"] = {**(kwargs.get("added_cond_kwargs") or {}), "image_embeds": embeds}
        return args, kwargs
    return hook
