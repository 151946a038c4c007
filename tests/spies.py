"""Spies the tab tests share: what a scheduler step, a pipeline call or a tab's handler received."""
from __future__ import annotations

from typing import Any

import torch


def step_inputs(monkeypatch, scheduler_class: type) -> list[torch.Tensor]:
    """The noise prediction every `scheduler_class.step` is taken with (after guidance), in order."""
    seen: list[torch.Tensor] = []
    real_step = scheduler_class.step

    def step(self, model_output, *args, **kwargs):
        seen.append(model_output.detach().clone())
        return real_step(self, model_output, *args, **kwargs)

    monkeypatch.setattr(scheduler_class, "step", step)
    return seen


def call_arguments(monkeypatch, pipeline_class: type) -> list[tuple[Any, dict]]:
    """(the pipeline, its keyword arguments) of every call of a `pipeline_class` instance."""
    calls: list[tuple[Any, dict]] = []
    real_call = pipeline_class.__call__

    def call(self, *args, **kwargs):
        calls.append((self, kwargs))
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(pipeline_class, "__call__", call)
    return calls


def assert_classifier_free_guidance(unet_outputs: list[torch.Tensor], taken: list[torch.Tensor], scale: float) -> None:
    """Each step took u + s·(c − u) of its UNet call's two halves; at s = 1 the call had no ∅ half at all."""
    assert len(unet_outputs) == len(taken) > 0
    for output, noise in zip(unet_outputs, taken):
        if scale > 1:
            unconditional, conditional = output.chunk(2)
            expected = unconditional + scale * (conditional - unconditional)
        else:
            assert output.shape[0] == 1
            expected = output
        torch.testing.assert_close(noise, expected)


def built_tab(module: Any) -> Any:
    """A tab as the app builds it (its widgets wired to its handlers), without a server."""
    import gradio as gr

    with gr.Blocks() as blocks:
        module.build_ui()
    return blocks


def event(blocks: Any, api_name: str) -> Any:
    """The block function of the event named `api_name` (its `.fn` is the handler)."""
    return next(fn for fn in blocks.fns.values() if fn.api_name == api_name)


def unet_forward_calls(monkeypatch, unet: Any, **read_at_call: Any) -> list[Any]:
    """Each call of `unet`: its latent input (`sample`), the embedding it attends to (`text`), its output,
    and each of `read_at_call` (name → a function read at that call, e.g. whether gradients were on).
    The spy is an instance attribute, removed after the test."""
    from types import SimpleNamespace

    calls: list[SimpleNamespace] = []
    forward = unet.forward

    def spy(sample, timestep, *args, **kwargs):
        output = forward(sample, timestep, *args, **kwargs)
        calls.append(SimpleNamespace(sample=sample.detach().clone(), text=kwargs["encoder_hidden_states"].detach().clone(),
                                     output=output[0].detach().clone(),
                                     **{name: read() for name, read in read_at_call.items()}))
        return output

    monkeypatch.setitem(vars(unet), "forward", spy)
    return calls
