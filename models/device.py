"""Device and dtype policy: CUDA in fp16, Apple MPS in fp16, otherwise CPU in fp32."""
from __future__ import annotations

import os

import torch


def pick_device() -> torch.device:
    """`PP_DEVICE` wins (e.g. `cpu` to keep a GPU free); else the best accelerator present."""
    forced = os.environ.get("PP_DEVICE", "").strip()
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    """Half precision where the hardware runs it fast; fp32 on CPU, where fp16 is slow and lossy."""
    return torch.float16 if device.type in ("cuda", "mps") else torch.float32


def module_nbytes(obj: object) -> int:
    """Bytes held by the parameters and buffers of every torch module reachable from `obj`.

    Walks dataclass/pipeline attributes two levels deep (a detector holding an estimator holding a
    network), counting each tensor once, so a handle that shares modules with another is not double
    counted within itself. A state dict handle (LoRA weights) counts its tensors, also in nested
    dicts (a handle of several files, one state dict each).
    """
    if isinstance(obj, dict):
        return sum(module_nbytes(value) if isinstance(value, dict) else value.numel() * value.element_size()
                   for value in obj.values() if isinstance(value, (dict, torch.Tensor)))
    seen: set[int] = set()
    total = 0
    candidates = [obj]
    for _ in range(2):
        children = []
        for parent in candidates:
            if not isinstance(parent, torch.nn.Module):
                children += list(getattr(parent, "__dict__", {}).values())
                components = getattr(parent, "components", None)
                if isinstance(components, dict):
                    children += list(components.values())
        candidates += [child for child in children if all(child is not c for c in candidates)]
    for candidate in candidates:
        if isinstance(candidate, torch.nn.Module):
            for tensor in list(candidate.parameters()) + list(candidate.buffers()):
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    total += tensor.numel() * tensor.element_size()
    return total
