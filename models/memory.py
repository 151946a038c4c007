"""Will a model fit? The machine's memory, the budget taken from it, and a model's resident size.

A model's resident size is its weights' bytes at the dtype it runs in (`hub.Download.resident_bytes`: an
fp32 file loaded in fp16 takes half its size, an fp16 file loaded in fp32 twice), plus a margin for the
buffers and activations of a run. The budget for resident models is a share of the machine's memory (RAM on
a CPU, the GPU's memory on CUDA), so a 16 GB laptop keeps about 12 GB of models and room for the rest.
"""
from __future__ import annotations

GIB = 2**30
BUDGET_SHARE = 0.75  # of the machine's memory, for resident models (PP_MAX_LOADED_GIB overrides)
RUN_MARGIN = 1.15  # activations, buffers and the allocator's slack on top of the weights


def machine_memory(device_type: str) -> tuple[int, int]:
    """(total, available) bytes of the memory models on `device_type` live in."""
    if device_type == "cuda":
        import torch

        free, total = torch.cuda.mem_get_info()
        return total, free
    import psutil  # CPU and Apple's unified memory

    memory = psutil.virtual_memory()
    return memory.total, memory.available


def element_size(dtype: object) -> int:
    """Bytes per number of a torch dtype (float32 4, float16 and bfloat16 2)."""
    return 2 if str(dtype).endswith(("float16", "bfloat16")) else 4


def budget_bytes(total: int, max_loaded_gib: float) -> int:
    """What resident models may hold: the configured GiB, else a share of the machine's memory."""
    return int(max_loaded_gib * GIB) if max_loaded_gib > 0 else int(total * BUDGET_SHARE)


def needed_bytes(weight_bytes: int) -> int:
    return int(weight_bytes * RUN_MARGIN)


def gib(nbytes: float) -> str:
    return f"{nbytes / GIB:.1f} GiB"
