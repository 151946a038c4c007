"""Samplers for one trained network: diffusers' scheduler classes, swapped into the shared SD-1.5 base for
one run and put back after it, and a count of the UNet's forward passes.

Every scheduler below integrates the same reverse process of the same ε-network; they differ in how
many network evaluations a step takes and how far each evaluation is trusted:

- DDIM (Song et al. 2021): the deterministic first-order step x_{t−1} = √ᾱ_{t−1} x̂0 + √(1−ᾱ_{t−1}) ε̂;
- PNDM (Liu et al. 2022): pseudo linear multistep, ε mixed from the last four steps (one extra call at the start);
- Euler (Karras et al. 2022): one Euler step of the probability-flow ODE in σ = √((1−ᾱ)/ᾱ);
- Euler ancestral: the Euler step to a lower σ, then fresh noise back up (a stochastic sampler);
- Heun (Karras et al. 2022): Euler, then a trapezoidal correction with a second evaluation (2 calls a step,
  except the last);
- DPM-Solver++ (Lu et al. 2022), multistep, second order, in x0 form.

Each is built `from_config` of the base's own scheduler config (same β schedule, same training steps).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch

# sampler → (diffusers class, the config it is built with beyond the base's)
SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "DDIM": ("DDIMScheduler", {}),
    "PNDM": ("PNDMScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM-Solver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
}
DETERMINISTIC = ("DDIM", "PNDM", "Euler", "Heun", "DPM-Solver++")  # ODE solvers: same x_T, same image in the limit


def make_sampler(config: Any, sampler: str) -> Any:
    """A fresh scheduler of `sampler`'s class from a model's scheduler config (never the model's own object)."""
    import diffusers

    class_name, overrides = SAMPLERS[sampler]
    return getattr(diffusers, class_name).from_config(config, **overrides)


# The scheduler of the shared base is one attribute behind every tab that calls the base pipeline itself:
# one run at a time may put another there.
_SCHEDULER_SWAP = threading.Lock()


@contextmanager
def swapped_scheduler(pipe: Any, scheduler: Any) -> Iterator[Any]:
    """Run the pipeline with `scheduler`, and always put its own scheduler back, whatever happens."""
    with _SCHEDULER_SWAP:
        previous = pipe.scheduler
        pipe.scheduler = scheduler
        try:
            yield scheduler
        finally:
            pipe.scheduler = previous


@dataclass
class CallCounter:
    calls: int = 0


@contextmanager
def counting_calls(module: torch.nn.Module) -> Iterator[CallCounter]:
    """Count the module's forward passes while the block runs (one UNet call per step, CFG's two halves being
    one batch; Heun's two evaluations two calls): what every sampler view of the diffusion tabs reports."""
    counter = CallCounter()

    def counted(*_: Any) -> None:
        counter.calls += 1
    hook = module.register_forward_hook(counted)
    try:
        yield counter
    finally:
        hook.remove()
