"""The DeepFloyd IF cascade on tiny T5 and IF UNets in the published layouts: one T5 encoding reaches both stages,
stage II is conditioned on stage I's own image and is 4× its side, the gated repositories are refused with what to
do, and bad input is refused plainly. A `-m hub` test checks the published pair: stage II downsampled looks like
stage I."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import models
from demos.tabs import if_cascade
from demos.tabs.if_cascade import TITLE, run_if_cascade, summary
from models import REGISTRY, ModelUnavailable, UserError
from models.cache import ModelCache
from models.deepfloyd_if import IF_STAGE_I, IF_STAGE_II, IF_T5
from models.downloads import Caches
from models.settings import Settings
from tests.conftest import ROOT
from tests.spies import built_tab, event


@pytest.fixture
def traced(monkeypatch):
    """Every T5 forward (its output) and every stage call (its keyword arguments and what it returned)."""
    from diffusers import IFPipeline, IFSuperResolutionPipeline

    t5 = models.get(IF_T5)
    trace = {"t5": [], "stage I": [], "stage II": []}
    handle = t5.text_encoder.register_forward_hook(
        lambda module, args, output: trace["t5"].append(output[0].detach().clone()))
    for name, cls in (("stage I", IFPipeline), ("stage II", IFSuperResolutionPipeline)):
        real = cls.__call__

        def call(self, *args, _real=real, _name=name, **kwargs):
            out = _real(self, *args, **kwargs)
            trace[_name].append((kwargs, out.images))
            return out

        monkeypatch.setattr(cls, "__call__", call)
    yield trace
    handle.remove()


def test_the_tiny_cascade_has_the_published_classes_and_if_unet_shapes():
    t5, low, high = models.get(IF_T5), models.get(IF_STAGE_I), models.get(IF_STAGE_II)
    assert type(t5.text_encoder).__name__ == "T5EncoderModel" and type(t5.tokenizer).__name__ == "T5Tokenizer"
    assert type(low).__name__ == "IFPipeline" and type(high).__name__ == "IFSuperResolutionPipeline"
    assert low.text_encoder is None and high.text_encoder is None  # both read the one encoding
    assert low.unet.config.encoder_hid_dim == high.unet.config.encoder_hid_dim == t5.text_encoder.config.d_model
    assert high.unet.config.class_embed_type == "timestep" and high.unet.config.in_channels == 2 * 3
    assert high.unet.config.sample_size == 4 * low.unet.config.sample_size
    assert low.watermarker is not None and low.safety_checker is None  # the checker is off for a local run


def test_t5_runs_once_both_stages_read_it_and_stage_ii_is_conditioned_on_stage_i(traced):
    result = run_if_cascade("a red cat", stage_i_steps=1, stage_ii_steps=1, noise_level=100, seed=3)
    assert len(traced["t5"]) == 2  # one encode_prompt: the prompt and the empty negative prompt, nothing more
    prompt, empty = traced["t5"]
    (first, low), = traced["stage I"]
    (second, _), = traced["stage II"]
    for kwargs in (first, second):
        torch.testing.assert_close(kwargs["prompt_embeds"], prompt.to(kwargs["prompt_embeds"].dtype))
        torch.testing.assert_close(kwargs["negative_prompt_embeds"], empty.to(kwargs["prompt_embeds"].dtype))
    assert torch.equal(second["image"], low)  # stage II is conditioned on stage I's own output
    assert second["noise_level"] == 100 and first["generator"].initial_seed() == second["generator"].initial_seed() == 3
    assert result.embedding_shape == tuple(prompt.shape[1:]) == (77, models.get(IF_T5).text_encoder.config.d_model)
    assert result.stage_ii.size[0] == 4 * result.stage_i.size[0] and result.stage_ii.size[1] == 4 * result.stage_i.size[1]
    assert set(result.seconds) == {"T5", "stage I", "stage II"} and all(s > 0 for s in result.seconds.values())
    assert "77 × " in summary(result) and "4× the side" in summary(result)


def test_sd15_runs_beside_with_the_same_prompt_and_seed_only_when_asked(monkeypatch):
    from diffusers import StableDiffusionPipeline

    from tests.spies import call_arguments

    calls = call_arguments(monkeypatch, StableDiffusionPipeline)
    assert run_if_cascade("a red cat", stage_i_steps=1, stage_ii_steps=1, seed=4).sd_image is None and not calls
    result = run_if_cascade("a red cat", stage_i_steps=1, stage_ii_steps=1, compare_sd=True, seed=4)
    (_, kwargs), = calls
    assert result.sd_image is not None and "SD-1.5" in result.seconds
    assert kwargs["generator"].initial_seed() == 4 and kwargs["num_inference_steps"] == 1


@pytest.fixture
def hub_without_token(monkeypatch, tmp_path):
    """The hub profile over an empty cache, online, with no token: the gated IF repositories are not here."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    cache = ModelCache(REGISTRY, Settings(profile="hub", offline=False), caches=Caches(hub=tmp_path / "hub"))
    monkeypatch.setattr(models, "model_cache", cache)
    return cache


def test_without_a_token_the_gated_repositories_are_refused_with_what_to_do(hub_without_token):
    with pytest.raises(ModelUnavailable) as refused:
        run_if_cascade("a red cat")
    message = str(refused.value)
    for part in ("DeepFloyd/IF-I-M-v1.0", "DeepFloyd/IF-II-M-v1.0", "is gated", "https://huggingface.co/DeepFloyd",
                 "HF_TOKEN", f'python app.py --download --tab "{TITLE}"'):
        assert part in message, message
    assert "20.65 GB for this device" in message  # T5's fp32 shards and stage I's UNet, as published
    assert hub_without_token.load_counts == {}  # refused before any load or download


def test_with_a_token_the_gate_lets_the_load_go_on(hub_without_token, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    if_cascade.refuse_gated()  # no refusal: the download itself is what may fail next


def test_check_lists_both_stages_and_says_they_are_gated(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "HF_TOKEN"}
    env.update(PP_MODELS="hub", HF_HUB_CACHE=str(tmp_path / "hub"))
    done = subprocess.run([sys.executable, "app.py", "--offline", "--check", "--tab", TITLE], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    for name in (IF_T5, IF_STAGE_I, IF_STAGE_II, "DeepFloyd/IF-I-M-v1.0", "DeepFloyd/IF-II-M-v1.0"):
        assert name in done.stdout, done.stdout + done.stderr[-2000:]
    assert done.stdout.count("gated: set HF_TOKEN") >= 3 and "needs HF_TOKEN" in done.stdout, done.stdout


@pytest.mark.parametrize("arguments, message", [
    (dict(prompt=""), "Please"),
    (dict(prompt="a cat", stage_i_steps=0), "Stage I steps"),
    (dict(prompt="a cat", stage_ii_steps=10_000), "Stage II steps"),
    (dict(prompt="a cat", guidance_scale=50), "guidance"),
    (dict(prompt="a cat", noise_level=1000), "noise level"),
])
def test_bad_input_is_refused_plainly(arguments, message):
    with pytest.raises(UserError, match=message):
        run_if_cascade(**arguments)


def test_the_tab_wires_one_api_event():
    blocks = built_tab(if_cascade)
    assert event(blocks, "if_cascade").fn is not None


# ---- the published checkpoints ------------------------------------------------------------------------

@pytest.mark.hub
def test_hub_stage_ii_is_256_and_agrees_with_stage_i_downsampled():
    from gradio_client import Client
    from PIL import Image

    from tests.conftest import AppServer
    from tests.test_hub_acceptance import hub_unreachable

    reason = hub_unreachable() or (None if os.environ.get("HF_TOKEN") else "DeepFloyd IF is gated: set HF_TOKEN")
    if reason:
        pytest.skip(reason)
    server = AppServer("--models", "hub", env={"HF_HUB_OFFLINE": "0", "PP_MODELS": "hub"})
    try:
        low, high, _, info, _ = Client(server.url, verbose=False).predict(
            "a red apple on a white table, studio photo", "", 20, 10, 7.0, 250, False, 0, False,
            api_name="/if_cascade")
    finally:
        server.stop()
    low, high = Image.open(low).convert("RGB"), Image.open(high).convert("RGB")
    assert low.size == (64, 64) and high.size == (256, 256), info
    down = np.asarray(high.resize((64, 64), Image.BICUBIC), dtype=np.float32) / 255
    assert np.abs(down - np.asarray(low, dtype=np.float32) / 255).mean() < 0.1
    assert "77 × 4096" in info
