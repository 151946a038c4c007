"""Diffusion-theory tab (tiny profile): the posterior mean and variances against diffusers' DDPM step,
β̃ against β as a pure change of noise scale, the score of an ε-prediction, the PC sampler being diffusers'
own loop with its corrector steps reaching the network, the probability-flow ODE being deterministic and
half the predictor's drift, the UNet block table against the configs and the timestep embedding against its
formula. Tiny weights are random: the tests assert the mechanism, never what a picture looks like."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import models
from demos.tabs import diffusion_theory
from demos.tabs.diffusion_theory import (
    PIXEL_MODEL, noise_scales, run_posterior, run_reverse_variance, run_score, run_score_sde, run_unet_table,
)
from models import UserError
from models.ddpm import CELEBAHQ_SCHEDULER
from models.pipelines.posterior import learned_range_variance, posterior, posterior_mean, step_coefficients
from models.pipelines.score_sde import pc_sample, prepare, probability_flow_sample, score_from_epsilon
from models.score_sde import NCSNPP_CELEBAHQ_SCHEDULER, SCORE_SDE
from models.stable_diffusion import SD15
from tests.conftest import ROOT
from tests.spies import built_tab, event

ASTRONAUT = ROOT / "assets" / "astronaut.jpg"


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def ddpm_scheduler(variance_type: str, **overrides):
    from diffusers import DDPMScheduler

    return DDPMScheduler(**{**CELEBAHQ_SCHEDULER, "variance_type": variance_type, **overrides})


def alpha_bar_prev(scheduler, t) -> torch.Tensor:
    previous = int(scheduler.previous_timestep(t))
    return scheduler.alphas_cumprod[previous] if previous >= 0 else torch.tensor(1.0)


# ---- 1. posterior and variance -----------------------------------------------------------------------

@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("steps", [1000, 10])
def test_ddpm_step_is_our_posterior_mean_plus_our_noise_scale_times_its_noise(variance_type, steps):
    """prev_sample = μ̃(x_t, x̂0) + √Σ·z, with μ̃ and Σ from our formulas and z the generator's draw."""
    scheduler = ddpm_scheduler(variance_type, clip_sample=False)
    scheduler.set_timesteps(steps)
    scales = noise_scales(scheduler)[variance_type]
    generator = torch.Generator().manual_seed(0)
    for index in (0, 3, len(scheduler.timesteps) // 2, len(scheduler.timesteps) - 2, len(scheduler.timesteps) - 1):
        t = scheduler.timesteps[index]
        x_t, epsilon = torch.randn((2, 1, 3, 4, 4), generator=generator, dtype=torch.float64)
        output = scheduler.step(epsilon, t, x_t, generator=torch.Generator().manual_seed(index))
        z = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(index), dtype=torch.float64)
        mean = posterior_mean(output.pred_original_sample, x_t, float(scheduler.alphas_cumprod[t]),
                              float(alpha_bar_prev(scheduler, t)))
        torch.testing.assert_close(output.prev_sample, mean + scales[index] * z, rtol=1e-4, atol=5e-4)  # ᾱ in fp32
    assert scales[-1] == 0 and all(scale > 0 for scale in scales[:-1])


def test_posterior_coefficients_follow_ddpm_and_beta_tilde_is_at_most_beta():
    table = posterior(ddpm_scheduler("fixed_small").alphas_cumprod)
    alpha_bar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    t = 500  # index 499: ᾱ_t = alpha_bar[499], ᾱ_{t−1} = alpha_bar[498], β_t = 1 − ᾱ_t/ᾱ_{t−1}
    beta = 1 - alpha_bar[499] / alpha_bar[498]
    assert float(table.x0_coefficient[t - 1]) == pytest.approx(float(alpha_bar[498].sqrt() * beta / (1 - alpha_bar[499])), rel=1e-5)
    assert float(table.xt_coefficient[t - 1]) == pytest.approx(float((1 - beta).sqrt() * (1 - alpha_bar[498]) / (1 - alpha_bar[499])), rel=1e-5)
    assert float(table.beta_tilde[0]) == 0 and bool((table.beta_tilde <= table.beta).all())
    result = run_posterior(t)
    assert result.coefficients["linear"]["c0"] == pytest.approx(float(table.x0_coefficient[t - 1]))
    assert result.coefficients["squaredcos_cap_v2"]["beta"] != result.coefficients["linear"]["beta"]
    assert result.plot.size[0] > 300


@pytest.mark.parametrize("t", [1, 10, 500, 999])
def test_learned_range_is_diffusers_log_interpolation_between_beta_tilde_and_beta(t):
    scheduler = ddpm_scheduler("learned_range")
    step = step_coefficients(scheduler.alphas_cumprod[t].double(), scheduler.alphas_cumprod[t - 1].double())
    for v in (0.0, 0.3, 1.0):
        # diffusers reads the network's output in [-1, 1] as v = (output + 1)/2 and returns the log variance
        log_variance = scheduler._get_variance(t, predicted_variance=torch.tensor(2 * v - 1, dtype=torch.float64))
        ours = learned_range_variance(torch.tensor(v, dtype=torch.float64), step.beta, step.beta_tilde)
        assert float(ours) == pytest.approx(math.exp(float(log_variance)), rel=1e-4)
    assert float(learned_range_variance(torch.tensor(1.0), step.beta, step.beta_tilde)) == pytest.approx(float(step.beta))


def test_fixed_small_and_fixed_large_runs_differ_only_in_the_noise_scale(monkeypatch):
    """Per step: the same x̂0-based mean formula, the same z, scaled by √β̃ in one run and √β in the other."""
    from diffusers import DDPMScheduler

    trace: dict[str, list] = {"fixed_small": [], "fixed_large": []}
    real_step = DDPMScheduler.step

    def step(self, model_output, timestep, sample, *args, **kwargs):
        output = real_step(self, model_output, timestep, sample, *args, **kwargs)
        trace[self.config.variance_type].append((self, int(timestep), sample.clone(), output.pred_original_sample.clone(),
                                                 output.prev_sample.clone()))
        return output

    monkeypatch.setattr(DDPMScheduler, "step", step)
    result = run_reverse_variance(steps=4, seed=1, noise_seed=2)
    small, large = trace["fixed_small"], trace["fixed_large"]
    assert len(small) == len(large) == 4 and result.unet_calls == 8
    torch.testing.assert_close(small[0][2], large[0][2])  # the same x_T
    for (scheduler, t, x_t, x0, prev), (_, _, x_t_large, x0_large, prev_large), k in zip(small, large, range(4)):
        a, a_prev = float(scheduler.alphas_cumprod[t]), float(alpha_bar_prev(scheduler, t))
        z_small = prev - posterior_mean(x0, x_t, a, a_prev)
        z_large = prev_large - posterior_mean(x0_large, x_t_large, a, a_prev)
        if t == 0:
            assert float(z_small.abs().max()) < 1e-5 and float(z_large.abs().max()) < 1e-5
            continue
        step = step_coefficients(torch.tensor(a, dtype=torch.float64), torch.tensor(a_prev, dtype=torch.float64))
        assert result.noise_scales["fixed_small"][k] == pytest.approx(float(step.beta_tilde) ** 0.5, rel=1e-4)
        assert result.noise_scales["fixed_large"][k] == pytest.approx(float(step.beta) ** 0.5, rel=1e-4)
        torch.testing.assert_close(z_small / result.noise_scales["fixed_small"][k],
                                   z_large / result.noise_scales["fixed_large"][k], rtol=1e-3, atol=1e-3)
    assert result.max_difference > 0 and result.timesteps == [751, 501, 251, 1]


# ---- 2. score-based models -------------------------------------------------------------------------------

def test_score_of_made_up_noise_is_minus_epsilon_over_sqrt_one_minus_alpha_bar_and_the_gradient_of_log_q():
    generator = torch.Generator().manual_seed(0)
    x0, epsilon = torch.randn((2, 1, 3, 4, 4), generator=generator, dtype=torch.float64)
    alpha_bar = 0.3
    x_t = (alpha_bar ** 0.5 * x0 + (1 - alpha_bar) ** 0.5 * epsilon).requires_grad_(True)
    log_q = -((x_t - alpha_bar ** 0.5 * x0) ** 2).sum() / (2 * (1 - alpha_bar))
    (gradient,) = torch.autograd.grad(log_q, x_t)
    torch.testing.assert_close(score_from_epsilon(epsilon, alpha_bar), gradient)
    torch.testing.assert_close(score_from_epsilon(epsilon, alpha_bar), -epsilon / 0.7 ** 0.5)


def test_score_view_reads_the_face_ddpm_prediction_as_a_score():
    result = run_score(ASTRONAUT, t=900, seed=0)
    alpha_bar = float(models.get(PIXEL_MODEL).scheduler.alphas_cumprod[899])
    assert result.alpha_bar == pytest.approx(alpha_bar) and result.factor == pytest.approx((1 - alpha_bar) ** -0.5)
    assert result.noisy.size == result.score.size == result.true_score.size == (32, 32)
    assert -1 <= result.cosine <= 1


def made_up_scheduler(steps: int):
    from diffusers import ScoreSdeVeScheduler

    scheduler = ScoreSdeVeScheduler(**NCSNPP_CELEBAHQ_SCHEDULER)
    prepare(scheduler, steps)
    return scheduler


def test_ode_step_is_half_the_predictor_drift_on_the_schedulers_sigmas():
    """With a made-up constant score, each Euler step moves x by exactly half of `step_pred`'s mean move."""
    scheduler = made_up_scheduler(5)
    score = torch.full((1, 3, 2, 2), 0.01, dtype=torch.float64)
    inputs: list[torch.Tensor] = []

    def network(sample, sigma):
        inputs.append(sample.clone())
        return score
    x = torch.zeros((1, 3, 2, 2), dtype=torch.float64)
    inputs.append(probability_flow_sample(network, scheduler, x))  # the inputs of the 5 calls, then the result
    for index, t in enumerate(scheduler.timesteps):
        drift = scheduler.step_pred(score, t, x, generator=torch.Generator().manual_seed(0)).prev_sample_mean - x
        assert float(drift.abs().max()) > 0
        torch.testing.assert_close(inputs[index + 1] - inputs[index], drift / 2)


def test_pc_loop_is_diffusers_score_sde_ve_pipeline():
    from diffusers import ScoreSdeVePipeline, ScoreSdeVeScheduler
    from diffusers.utils.torch_utils import randn_tensor

    unet = models.get(SCORE_SDE).unet
    pipe = ScoreSdeVePipeline(unet=unet, scheduler=ScoreSdeVeScheduler(**{**NCSNPP_CELEBAHQ_SCHEDULER, "correct_steps": 1}))
    expected = pipe(num_inference_steps=2, generator=torch.Generator().manual_seed(4), output_type="np").images
    generator = torch.Generator().manual_seed(4)
    side = unet.config.sample_size
    x = randn_tensor((1, 3, side, side), generator=generator) * pipe.scheduler.init_noise_sigma
    prepare(pipe.scheduler, 2)
    with torch.inference_mode():
        ours = pc_sample(lambda sample, sigma: unet(sample, sigma).sample, pipe.scheduler, x, generator, 1)
    np.testing.assert_array_equal(ours.clamp(0, 1).permute(0, 2, 3, 1).numpy(), expected)


def test_probability_flow_ode_ignores_the_noise_seed_and_the_pc_sampler_does_not():
    first = run_score_sde(steps=2, correct_steps=0, seed=0, noise_seed=1)
    other_noise = run_score_sde(steps=2, correct_steps=0, seed=0, noise_seed=5)
    other_start = run_score_sde(steps=2, correct_steps=0, seed=7, noise_seed=1)
    assert np.array_equal(pixels(first.ode_image), pixels(other_noise.ode_image))
    assert np.abs(pixels(first.pc_image) - pixels(other_noise.pc_image)).mean() > 5
    assert np.abs(pixels(first.ode_image) - pixels(other_start.ode_image)).mean() > 5


@pytest.mark.parametrize("correct_steps, snr", [(0, 0.075), (2, 0.3)])
def test_corrector_steps_and_snr_reach_the_computation(monkeypatch, correct_steps, snr):
    from diffusers import ScoreSdeVeScheduler

    seen_snr = []
    real_correct = ScoreSdeVeScheduler.step_correct

    def step_correct(self, *args, **kwargs):
        seen_snr.append(self.config.snr)
        return real_correct(self, *args, **kwargs)

    monkeypatch.setattr(ScoreSdeVeScheduler, "step_correct", step_correct)
    result = run_score_sde(steps=2, correct_steps=correct_steps, snr=snr, seed=0)
    assert result.pc_unet_calls == 2 * (1 + correct_steps) and result.ode_unet_calls == 2
    assert seen_snr == [snr] * 2 * correct_steps
    assert models.get(SCORE_SDE).scheduler.config.snr == NCSNPP_CELEBAHQ_SCHEDULER["snr"]  # the shared one untouched


# ---- 3. the UNet ------------------------------------------------------------------------------------------

def expected_blocks(config) -> list[tuple[str, int, int, int]]:
    """(name, resolution in, resolution out, channels out) from the config alone."""
    side, count = config.sample_size, len(config.block_out_channels)
    rows = []
    for i, channels in enumerate(config.block_out_channels):
        rows.append((f"down_blocks.{i}", side // 2 ** i, side // 2 ** min(i + 1, count - 1), channels))
    bottom = side // 2 ** (count - 1)
    rows.append(("mid_block", bottom, bottom, config.block_out_channels[-1]))
    for i, channels in enumerate(reversed(config.block_out_channels)):
        given = side // 2 ** (count - 1 - i)
        rows.append((f"up_blocks.{i}", given, given * 2 if i < count - 1 else given, channels))
    return rows


@pytest.mark.parametrize("model", [PIXEL_MODEL, SD15])
def test_unet_table_matches_the_config_and_marks_cross_attention_and_temb(model):
    result = run_unet_table(model)
    unet = models.get(model).unet
    shown = [(row[0], *map(int, row[2].replace("×", " ").replace("→", " ").split()[::2]), row[3]) for row in result.rows]
    assert shown == expected_blocks(unet.config)
    cross = [row[5] == "yes" for row in result.rows]
    blocks = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
    assert cross == ["CrossAttn" in type(block).__name__ for block in blocks]
    assert any(cross) == (model == SD15)
    assert all(row[6].startswith(f"{len(block.resnets)} of {len(block.resnets)}") for row, block in zip(result.rows, blocks))
    assert sum(row[4] for row in result.rows) < result.total_parameters == sum(p.numel() for p in unet.parameters())


@pytest.mark.parametrize("model", [PIXEL_MODEL, SD15])
def test_timestep_embedding_is_the_sinusoid_formula_and_the_unets_own(model):
    result = run_unet_table(model)
    config = models.get(model).unet.config
    dims, shift = config.block_out_channels[0], config.freq_shift
    half = dims // 2
    t = torch.arange(1000, dtype=torch.float64)[:, None]
    angles = t * torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / (half - shift))
    halves = [torch.sin(angles), torch.cos(angles)]
    formula = torch.cat(halves[::-1] if config.flip_sin_to_cos else halves, dim=1).T
    torch.testing.assert_close(result.embedding.double(), formula, rtol=1e-4, atol=1e-4)
    own = models.get(model).unet.time_proj(torch.arange(1000)).T  # the module the UNet embeds t with
    torch.testing.assert_close(result.embedding, own)


# ---- input checking and wiring -----------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: run_posterior(0), "between 1 and 1000"),
    (lambda: run_reverse_variance(steps=0), "between 1 and 1000"),
    (lambda: run_score(ASTRONAUT, t=1001), "between 1 and 1000"),
    (lambda: run_score_sde(steps=3, correct_steps=9), "corrector steps must be between 0 and 5"),
    (lambda: run_score_sde(steps=3, snr=-1), "signal-to-noise ratio must be between"),
    (lambda: run_unet_table("sdxl"), "Unknown UNet"),
])
def test_bad_input_is_a_clear_user_error(call, message):
    with pytest.raises(UserError, match=message):
        call()


def test_the_tab_builds_with_an_api_name_on_every_event():
    blocks = built_tab(diffusion_theory)
    for api_name in ("posterior_coefficients", "reverse_variance", "score_view", "score_sde", "unet_blocks"):
        assert event(blocks, api_name).fn is not None
    plot, text = event(blocks, "posterior_coefficients").fn(250)
    assert plot.size[0] > 300 and text.startswith("t = **250**")
    rows, text, _ = event(blocks, "unet_blocks").fn(PIXEL_MODEL)
    assert [row[0] for row in rows][:2] == ["down_blocks.0", "down_blocks.1"] and "parameters" in text


# ---- acceptance on the published checkpoint (network) -------------------------------------------------

@pytest.mark.hub
def test_score_sde_ode_samples_a_face_not_noise():
    """`-m hub`: the published NCSN++ through the app's API; its ODE sample is smooth and MTCNN finds a face."""
    from gradio_client import Client
    from PIL import Image

    from tests.conftest import AppServer
    from tests.test_hub_acceptance import hub_unreachable

    reason = hub_unreachable()
    if reason:
        pytest.skip(reason)
    server = AppServer("--models", "hub", env={"HF_HUB_OFFLINE": "0", "PP_MODELS": "hub"})
    try:
        _, ode, *_ = Client(server.url, verbose=False).predict(500, 0, 0.075, 0, False, api_name="/score_sde")
    finally:
        server.stop()
    image = np.asarray(Image.open(ode).convert("RGB"), dtype=np.float32)
    assert np.abs(np.diff(image, axis=1)).mean() < 12  # Gaussian noise at this scale differs by ~60 levels
    from facenet_pytorch import MTCNN

    boxes, probabilities = MTCNN(keep_all=True).detect(Image.fromarray(image.astype(np.uint8)))
    assert boxes is not None and float(np.asarray(probabilities, dtype=np.float32).max()) > 0.9
