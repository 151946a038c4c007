"""Memory held by ControlNet + T2I-Adapter + plain SD-1.5: one shared base (`from_pipe`, what the app
does) versus three separately loaded pipelines.

    python bench/controlnet_memory.py                         # tiny checkpoints, offline
    PP_MODELS=hub python bench/controlnet_memory.py           # the published checkpoints (downloads ~3 GB)
    python bench/controlnet_memory.py --real-size             # published architectures, random weights
    python bench/controlnet_memory.py --real-size --dtype float16 --device cuda

Each scenario runs in its own process; it prints the bytes of unique parameter/buffer tensors
reachable from the pipelines (sharing counted once) and the process's peak resident memory.
`--real-size` builds SD-1.5's UNet/VAE/text encoder, ControlNet v1.1 and T2I-Adapter v2 from
configs written to match the published ones, randomly initialised in memory (no download).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PP_MODELS", "tiny")
os.environ.setdefault("PP_TINY_DIR", str(Path(tempfile.gettempdir()) / "pp-bench-tiny"))

CONTROLNET, ADAPTER = "controlnet-canny", "controlnet-t2iadapter-sketch"


def unique_bytes(pipes: list) -> int:
    """Bytes of every distinct tensor held by the pipelines' modules (a shared module counts once)."""
    import torch

    seen: dict[int, int] = {}
    for pipe in pipes:
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                for tensor in [*component.parameters(), *component.buffers()]:
                    seen[tensor.data_ptr()] = tensor.numel() * tensor.element_size()
    return sum(seen.values())


# ---- published checkpoints, from this profile's cache (the Hub's, or the hub-shaped tiny one) --------------

def checkpoint_pipes(shared: bool) -> list:
    import torch
    from diffusers import (ControlNetModel, StableDiffusionAdapterPipeline, StableDiffusionControlNetPipeline,
                           StableDiffusionPipeline, T2IAdapter)

    import models

    if shared:  # exactly what the app does
        return [models.get(CONTROLNET), models.get(ADAPTER), models.get("sd15")]
    device = torch.device(os.environ.get("PP_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))
    cache = models.model_cache

    def options(name: str) -> dict:  # the files and arguments the app's loader would use, from this profile's cache
        download, dtype = cache.plan(models.REGISTRY[name], device)
        return dict(revision=download.revision, cache_dir=cache.caches().hub, local_files_only=True, dtype=dtype,
                    variant=download.variant, use_safetensors=download.use_safetensors)

    base = dict(options("sd15"), safety_checker=None, requires_safety_checker=False)
    controlnet = ControlNetModel.from_pretrained(models.REGISTRY[CONTROLNET].checkpoint, **options(CONTROLNET))
    adapter = T2IAdapter.from_pretrained(models.REGISTRY[ADAPTER].checkpoint, **options(ADAPTER))
    repo = models.REGISTRY["sd15"].checkpoint
    return [
        StableDiffusionControlNetPipeline.from_pretrained(repo, controlnet=controlnet, **base).to(device),
        StableDiffusionAdapterPipeline.from_pretrained(repo, adapter=adapter, **base).to(device),
        StableDiffusionPipeline.from_pretrained(repo, **base).to(device),
    ]


# ---- published architectures, random weights ------------------------------------------------------

def sd15_components(dtype, device) -> dict:
    """SD-1.5's UNet, VAE and CLIP ViT-L/14 text encoder configs (as in the published config.json files)."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from models.clip import tiny_tokenizer
    from models.stable_diffusion import SD15_SCHEDULER

    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
        attention_head_dim=8, cross_attention_dim=768, norm_num_groups=32,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
        norm_num_groups=32, sample_size=512, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768))
    return dict(unet=unet.to(device, dtype), vae=vae.to(device, dtype), text_encoder=text_encoder.to(device, dtype),
                tokenizer=tiny_tokenizer(), scheduler=PNDMScheduler(**SD15_SCHEDULER), feature_extractor=None,
                safety_checker=None, requires_safety_checker=False)


def real_size_pipes(shared: bool, dtype, device) -> list:
    from diffusers import (ControlNetModel, StableDiffusionAdapterPipeline, StableDiffusionControlNetPipeline,
                           StableDiffusionPipeline, T2IAdapter)

    base = StableDiffusionPipeline(**sd15_components(dtype, device))
    controlnet = ControlNetModel.from_unet(base.unet).to(device, dtype)  # v1.1: (16, 32, 96, 256) embedding
    adapter = T2IAdapter(in_channels=1, channels=[320, 640, 1280, 1280], num_res_blocks=2, downscale_factor=8,
                         adapter_type="full_adapter").to(device, dtype)
    if shared:
        return [StableDiffusionControlNetPipeline.from_pipe(base, controlnet=controlnet, dtype=dtype),
                StableDiffusionAdapterPipeline.from_pipe(base, adapter=adapter, dtype=dtype), base]
    return [StableDiffusionControlNetPipeline(**sd15_components(dtype, device), controlnet=controlnet),
            StableDiffusionAdapterPipeline(**sd15_components(dtype, device), adapter=adapter), base]


def scenario(shared: bool, real_size: bool, dtype_name: str, device_name: str) -> dict:
    import torch

    if real_size:
        pipes = real_size_pipes(shared, getattr(torch, dtype_name), torch.device(device_name))
    else:
        pipes = checkpoint_pipes(shared)
    result = {"module_bytes": unique_bytes(pipes),
              "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if torch.cuda.is_available():
        result["cuda_allocated_bytes"] = torch.cuda.memory_allocated()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-size", action="store_true", help="published architectures with random weights")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scenario", choices=["shared", "separate"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scenario:  # child process: measure one scenario, print JSON
        print(json.dumps(scenario(args.scenario == "shared", args.real_size, args.dtype, args.device)))
        return
    import models

    if not args.real_size and models.model_settings.profile == "tiny":
        for name in ("sd15", CONTROLNET, ADAPTER):  # build the tiny cache first, outside the measured processes
            models.model_cache.build_tiny(models.REGISTRY[name])
    results = {}
    for name in ("shared", "separate"):
        command = [sys.executable, __file__, "--scenario", name, "--dtype", args.dtype, "--device", args.device]
        output = subprocess.run(command + (["--real-size"] if args.real_size else []), check=True,
                                capture_output=True, text=True).stdout
        results[name] = json.loads(output.strip().splitlines()[-1])
    what = "real-size random" if args.real_size else f"{models.model_settings.profile} checkpoints"
    print(f"ControlNet canny + T2I-Adapter sketch + plain SD-1.5 ({what}, {args.dtype if args.real_size else 'loader dtype'})")
    for key in results["shared"]:
        shared, separate = results["shared"][key], results["separate"][key]
        print(f"{key:>22}: shared {shared / 2**20:10.1f} MiB   separate {separate / 2**20:10.1f} MiB   "
              f"separate/shared {separate / shared:5.2f}x")


if __name__ == "__main__":
    main()
