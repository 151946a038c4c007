"""Universal guidance (Bansal et al. 2023, "Universal Guidance for Diffusion Models") on the shared SD-1.5 base.

A frozen text-to-image model is steered by an off-the-shelf network that never saw diffusion noise: the
guide reads the VAE-decoded clean-image estimate D(ẑ0) at every step. Three guides: a face recogniser
(ArcFace via insightface, or FaceNet) toward a reference face, a face parser toward a target layout, CLIP
image features toward a reference style. Forward guidance, backward guidance (m Adam steps) and
self-recurrence (k) are toggles; the tab shows the guide's loss per step, the predicted x0 filmstrip and
what decoding x0 for the guide costs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import models
from demos import ASSETS
from demos.shared.comparison import Field, Method, Output, Task
from demos.shared.generation import generator_for, png_with_parameters, resolve_seed
from demos.shared.inputs import number_in_range, prompt_text, rgb_image
from demos.shared.limits import LIMITS
from models import ProgressFn, UserError
from models.arcface import ARCFACE, LICENCE_NOTE, align_crop
from models.faces import FACE_CLASSES
from models.pipelines import universal_guidance as ug
from models.pipelines.face_swap import face_views
from models.safety import screened_images
from models.stable_diffusion import SD15

IDENTITY, SEGMENTATION, STYLE = "face identity", "segmentation", "CLIP style"
GUIDES = (IDENTITY, SEGMENTATION, STYLE)
IDENTITY_NETWORKS = {"ArcFace (insightface)": ARCFACE, "FaceNet (VGGFace2)": "facenet-vggface2"}
JUDGE = "facenet-casia-webface"  # reports identity similarity; never a guide here
DETECTOR, PARSER, CLIP = "face-detector-mtcnn", "face-parser-segformer", "clip-vit-base-patch16"
MAX_STRENGTH = 1e6
MAX_BACKWARD_STEPS = 20
MAX_RECURRENCE = 10
GUIDE_SCALES = {"full": 1.0, "half": 0.5, "quarter": 0.25}
# Where a face sits in a generated portrait (fractions of width/height): the guide's differentiable crop.
FACE_BOX = (0.25, 0.18, 0.75, 0.68)
# The paper's settings per guide (repo: face s = 20000 k = 2 with an L1 loss; segmentation s = 400 k = 10;
# style s = 6 k = 6). The losses here are 1 − cos and cross-entropy, so s differs from the repo's for faces.
PAPER = {
    IDENTITY: ug.GuidanceSettings(steps=100, forward_strength=2000.0, recurrence=2, guided_fraction=0.8),
    SEGMENTATION: ug.GuidanceSettings(steps=100, forward_strength=400.0, recurrence=10),
    STYLE: ug.GuidanceSettings(steps=100, forward_strength=6.0, recurrence=6),
}
QUICK = ug.GuidanceSettings(steps=10, forward_strength=2000.0, recurrence=1, guided_fraction=0.8)  # page default
DEFAULT_PROMPT = "a close-up portrait photo of a person, studio light"


@dataclass
class Guide:
    """A loss on an image in [-1,1] and what it was built from."""

    loss: ug.LossFn
    target_view: Image.Image  # what the guide steers toward (aligned face, target parse, style image)
    models: list[str]
    judge: Callable[[torch.Tensor], float] | None = None  # identity similarity by a network that is not the guide


@dataclass
class UniversalGuidanceResult:
    image: Image.Image
    plain_image: Image.Image | None  # same seed, no guidance
    target_view: Image.Image
    filmstrip: list[tuple[Image.Image, str]]  # decoded ẑ0 along the guided trajectory
    steps: list[ug.StepRecord]
    final_loss: dict[str, float]  # the guide's loss on the final image: guided, plain
    similarity: dict[str, float]  # judge cosine to the reference (identity guide only)
    cost: dict[str, float]  # seconds per step: guided, plain, decode share
    parameters: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _tensor(image: np.ndarray | Image.Image, like: torch.Tensor) -> torch.Tensor:
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
    return pixels.to(like.device, like.dtype)


def face_box(height: int, width: int) -> torch.Tensor:
    """The generated image's face region (pixels): a square, as the recognisers take square crops."""
    x0, y0, x1, y1 = FACE_BOX
    return torch.tensor([x0 * width, y0 * height, x1 * width, y1 * height])


def aligned_reference(reference: Image.Image, progress: ProgressFn | None) -> np.ndarray:
    """The reference's largest face, ArcFace-aligned (insightface `norm_crop`, 112²) from MTCNN's 5 landmarks."""
    faces = models.get(DETECTOR, progress).detect(reference)
    if not faces:
        raise UserError("No face found in the reference image. Use a photo where a face is visible, roughly "
                        "frontal and not covered.")
    face = max(faces, key=lambda found: found.side)
    crop, _ = align_crop(np.asarray(reference), face.landmarks)
    return crop


def identity_guide(reference: Image.Image, network: str, device: torch.device, progress: ProgressFn | None) -> Guide:
    """ℓ = 1 − cos(FR(crop of the face region of D(ẑ0))), FR(aligned reference)); FaceNet CASIA judges. The face
    region is FACE_BOX of whatever image the guide is given: it may be decoded at half or quarter size."""
    crop = aligned_reference(reference, progress)
    guide, judge = models.get(network, progress), models.get(JUDGE, progress)
    reference_pixels = _tensor(crop, torch.zeros((), device=device))
    with torch.no_grad():
        target = guide.embed(reference_pixels)
        judged = judge.embed(reference_pixels)

    def loss(image: torch.Tensor) -> torch.Tensor:
        embedding = guide.embed(face_views(image, face_box(*image.shape[-2:]), guide.image_size))
        return (1 - F.cosine_similarity(embedding.float(), target.float(), dim=-1)).mean()

    def judge_similarity(image: torch.Tensor) -> float:
        with torch.no_grad():
            embedding = judge.embed(face_views(image, face_box(*image.shape[-2:]), judge.image_size))
        return float(F.cosine_similarity(embedding.float(), judged.float(), dim=-1).mean())

    return Guide(loss, Image.fromarray(crop), [DETECTOR, network, JUDGE], judge_similarity)


def segmentation_target(reference: Image.Image | None, mask: Any, size: tuple[int, int],
                        progress: ProgressFn | None) -> tuple[torch.Tensor, Image.Image]:
    """Target face-parse labels [1,H,W]: from a mask (white = face, the rest background) or the reference's parse."""
    height, width = size
    if mask is not None:
        picture = rgb_image(mask, "a segmentation mask").convert("L")
        if abs(picture.width / picture.height - width / height) > 0.01:
            raise UserError(f"The segmentation target is {picture.width}×{picture.height}; it must have the output's "
                            f"shape ({width}×{height}, or any size with the same aspect ratio).")
        binary = np.asarray(picture.resize((width, height), Image.Resampling.NEAREST)) > 127
        if binary.all() or not binary.any():
            raise UserError("The segmentation mask is all one colour: paint the face region white and the rest black.")
        labels = torch.from_numpy(binary.astype(np.int64))[None]  # 1 = skin (a face class), 0 = background
        return labels, Image.fromarray((binary * 255).astype(np.uint8))
    if reference is None:
        raise UserError("Segmentation guidance needs a target: a reference photo (its face parse is the target) "
                        "or a black-and-white mask of the face region.")
    parser = models.get(PARSER, progress)
    pixels = _tensor(reference.resize((width, height), Image.Resampling.BICUBIC), next(parser.model.parameters()))
    with torch.no_grad():
        labels = parser.logits(pixels).argmax(dim=1)
    view = np.isin(labels[0].cpu().numpy(), FACE_CLASSES)
    return labels.cpu(), Image.fromarray((view * 255).astype(np.uint8))


def segmentation_guide(reference: Image.Image | None, mask: Any, size: tuple[int, int],
                       progress: ProgressFn | None) -> Guide:
    """ℓ = cross-entropy of the face parser's logits on D(ẑ0) against the target labels (the repo's loss)."""
    labels, view = segmentation_target(reference, mask, size, progress)
    parser = models.get(PARSER, progress)

    def loss(image: torch.Tensor) -> torch.Tensor:
        logits = parser.logits(image).float()
        target = labels.to(logits.device)
        if target.shape[-2:] != logits.shape[-2:]:  # a lower-resolution guide image
            target = F.interpolate(target[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0].long()
        return F.cross_entropy(logits, target)

    return Guide(loss, view, [PARSER])


def style_guide(reference: Image.Image, device: torch.device, progress: ProgressFn | None) -> Guide:
    """ℓ = 1 − cos(CLIP image features of D(ẑ0), of the reference) (the repo's style guidance uses CLIP)."""
    clip = models.get(CLIP, progress)
    processor = clip.processor.image_processor
    mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
    side = processor.crop_size["height"]

    def features(image: torch.Tensor) -> torch.Tensor:
        pixels = F.interpolate((image.float() + 1) / 2, size=(side, side), mode="bicubic", align_corners=False)
        pixels = ((pixels - mean.to(pixels.device)) / std.to(pixels.device)).to(clip.model.dtype)
        output = clip.model.get_image_features(pixel_values=pixels)
        return getattr(output, "pooler_output", output).float()

    with torch.no_grad():
        target = features(_tensor(reference.convert("RGB").resize((side, side)), torch.zeros((), device=device)))

    def loss(image: torch.Tensor) -> torch.Tensor:
        return (1 - F.cosine_similarity(features(image), target, dim=-1)).mean()

    return Guide(loss, reference, [CLIP])


@dataclass
class GuidanceRequest:
    prompt: str
    guide: str
    network: str
    reference: Image.Image | None
    settings: ug.GuidanceSettings
    seed: int


def check_inputs(prompt: Any, guide: Any, reference: Any, identity_network: Any, steps: Any, guidance_scale: Any,
                 forward: bool, strength: Any, backward: bool, backward_steps: Any, recurrence: Any,
                 guided_fraction: Any, decay: bool, guide_resolution: Any, seed: Any, randomize: bool) -> GuidanceRequest:
    """Every setting checked (a `UserError` saying what to change) before any model loads."""
    prompt = prompt_text(prompt, "the image to generate")
    if guide not in GUIDES:
        raise UserError(f"Choose a guide: {', '.join(GUIDES)}.")
    if identity_network not in IDENTITY_NETWORKS:
        raise UserError(f"Choose an identity network: {', '.join(IDENTITY_NETWORKS)}.")
    if guide_resolution not in GUIDE_SCALES:
        raise UserError(f"Choose a guide resolution: {', '.join(GUIDE_SCALES)}.")
    reference_image = None if reference is None and guide == SEGMENTATION else rgb_image(reference, "a reference image")
    settings = ug.GuidanceSettings(
        steps=number_in_range(steps, "Steps", 1, LIMITS.max_steps, whole=True),
        guidance_scale=number_in_range(guidance_scale, "The CFG scale", 1, 30),
        forward_strength=number_in_range(strength, "The guidance strength s", 0, MAX_STRENGTH) if forward else 0.0,
        backward_steps=(number_in_range(backward_steps, "Backward steps m", 1, MAX_BACKWARD_STEPS, whole=True)
                        if backward else 0),
        recurrence=number_in_range(recurrence, "Self-recurrence k", 1, MAX_RECURRENCE, whole=True),
        guided_fraction=number_in_range(guided_fraction, "The guided fraction of the steps", 0, 1),
        decay=bool(decay),
        guide_scale=GUIDE_SCALES[guide_resolution],
    )
    return GuidanceRequest(prompt, guide, IDENTITY_NETWORKS[identity_network], reference_image, settings,
                           resolve_seed(seed, randomize))


def run_universal_guidance(
    prompt: str = DEFAULT_PROMPT,
    guide: str = IDENTITY,
    reference: Any = None,
    mask: Any = None,
    identity_network: str = "ArcFace (insightface)",
    steps: int = QUICK.steps,
    guidance_scale: float = QUICK.guidance_scale,
    forward: bool = True,
    strength: float = QUICK.forward_strength,
    backward: bool = False,
    backward_steps: int = 2,
    recurrence: int = QUICK.recurrence,
    guided_fraction: float = QUICK.guided_fraction,
    decay: bool = False,
    guide_resolution: str = "full",
    seed: Any = 0,
    randomize: bool = False,
    compare_plain: bool = True,
    progress: ProgressFn | None = None,
) -> UniversalGuidanceResult:
    """Generate from `prompt` on the shared SD-1.5 base, steered by the chosen guide (and, to compare, without)."""
    request = check_inputs(prompt, guide, reference, identity_network, steps, guidance_scale, forward, strength,
                           backward, backward_steps, recurrence, guided_fraction, decay, guide_resolution, seed,
                           randomize)
    settings = request.settings
    base = models.get(SD15, progress)
    side = base.unet.config.sample_size * base.vae_scale_factor
    size = (side, side)
    if request.guide == IDENTITY:
        chosen = identity_guide(request.reference, request.network, base.device, progress)
    elif request.guide == SEGMENTATION:
        chosen = segmentation_guide(request.reference, mask, size, progress)
    else:
        chosen = style_guide(request.reference, base.device, progress)

    started = time.perf_counter()
    runs = [("universal guidance", settings)]
    if compare_plain:
        runs.append(("plain SD", ug.GuidanceSettings(steps=settings.steps, guidance_scale=settings.guidance_scale)))
    traces = []
    for number, (what, run_settings) in enumerate(runs):
        def report(done: int, total: int, number: int = number, what: str = what) -> None:
            if progress is not None:
                progress((number * total + done) / (len(runs) * total), desc=f"{what}: step {done}/{total}")
        loss = chosen.loss if what == "universal guidance" else None
        traces.append(ug.universal_guidance_sample(base, request.prompt, loss, run_settings,
                                                   generator_for(request.seed, base.device), callback=report))
    with torch.no_grad():
        images = [ug.decode(base.vae, trace.latents) for trace in traces]
        final_loss = {what: float(chosen.loss(image)) for (what, _), image in zip(runs, images)}
        similarity = {what: chosen.judge(image) for (what, _), image in zip(runs, images)} if chosen.judge else {}
    guided = traces[0]
    cost = {"guided step s": float(np.mean([r.seconds for r in guided.steps])),
            "guide decode share": sum(r.decode_seconds for r in guided.steps) / max(1e-9, sum(r.seconds for r in guided.steps))}
    if compare_plain:
        cost["plain step s"] = float(np.mean([r.seconds for r in traces[1].steps]))
    parameters = dict(
        method="universal guidance (Bansal et al.)", model=SD15, prompt=request.prompt, guide=request.guide,
        guide_models=chosen.models, steps=settings.steps, guidance_scale=settings.guidance_scale,
        forward_strength=settings.forward_strength, backward_steps=settings.backward_steps,
        backward_lr=settings.backward_lr, recurrence=settings.recurrence, guided_fraction=settings.guided_fraction,
        decay=settings.decay, guide_scale=settings.guide_scale, scheduler="DDIMScheduler (η = 0)", seed=request.seed,
        generated="AI-generated image (Stable Diffusion 1.5 with universal guidance)",
        profile=models.model_settings.profile)
    return UniversalGuidanceResult(
        image=screened_images(base, images[0])[0],
        plain_image=screened_images(base, images[1])[0] if compare_plain else None,
        target_view=chosen.target_view,
        filmstrip=[(screened_images(base, x0)[0], f"x0 at t={t}") for t, x0 in guided.x0],
        steps=guided.steps,
        final_loss=final_loss,
        similarity=similarity,
        cost=cost,
        parameters=parameters,
        seconds=time.perf_counter() - started,
    )


# ---- presentation ------------------------------------------------------------------------------

def loss_figure(result: UniversalGuidanceResult):
    """The guide's loss per step (before and after backward guidance) and the strength s_t."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.0), layout="constrained")
    axes = figure.subplots()
    steps = np.arange(1, len(result.steps) + 1)
    losses = [np.nan if r.loss is None else r.loss for r in result.steps]
    axes.plot(steps, losses, marker="o", markersize=3, label="ℓ at ẑ0 (first pass)")
    if any(r.backward for r in result.steps):
        for which, (label, marker) in enumerate([("before Δ*", "^"), ("at ẑ0 + Δ* (after m Adam steps)", "x")]):
            axes.plot(steps, [np.nan if r.backward is None else r.backward[which] for r in result.steps],
                      marker=marker, markersize=3, ls="--", label=f"ℓ {label}")
    axes.set_xlabel("DDIM step (noisy → clean)")
    axes.set_ylabel(f"{result.parameters['guide']} loss")
    twin = axes.twinx()
    twin.plot(steps, [r.strength for r in result.steps], color="tab:gray", ls=":", label="s_t")
    twin.set_ylabel("forward strength s_t")
    axes.legend(loc="upper right", fontsize=7)
    axes.set_title("Guide loss along the trajectory", fontsize=9)
    return figure


def summary(result: UniversalGuidanceResult) -> str:
    p = result.parameters
    loss = result.final_loss
    lines = [f"**Final {p['guide']} loss:** guided **{loss['universal guidance']:.4f}**"
             + (f" · plain SD {loss['plain SD']:.4f}" if "plain SD" in loss else "")]
    if result.similarity:
        sim = result.similarity
        lines.append(f"**Identity to the reference (judge: {JUDGE}, not the guide):** guided "
                     f"**{sim['universal guidance']:.3f}**" + (f" · plain SD {sim['plain SD']:.3f}" if "plain SD" in sim else ""))
    cost = result.cost
    calls = sum(r.unet_calls for r in result.steps)
    line = (f"**Cost:** {cost['guided step s']:.2f} s per guided-run step ({calls} UNet calls for {len(result.steps)} "
            f"steps, k = {p['recurrence']}); decoding ẑ0 for the guide is {100 * cost['guide decode share']:.0f} % of it")
    if "plain step s" in cost:
        line += f" · plain step {cost['plain step s']:.2f} s ({cost['guided step s'] / max(cost['plain step s'], 1e-9):.1f}×)"
    lines.append(line)
    lines.append(f"seed {p['seed']} · {p['steps']} DDIM steps · s = {p['forward_strength']:g} · m = {p['backward_steps']} "
                 f"· guide image at {p['guide_scale']:g}× · {result.seconds:.1f} s")
    return "\n\n".join(lines)


# ---- Compare ---------------------------------------------------------------------------------------

GUIDED_IMAGE = Task("prompt + reference → guided image", (
    Field("prompt", "Prompt"),  # one widget per field name in Compare: the same field as the other image tasks
    Field("reference", "Reference image (face or style)", "image"),
    Field("seed", "Seed", "number", 0),
))


def _compare(guide: str | None, network: str = "ArcFace (insightface)") -> Callable[..., Output]:
    def run(prompt: str, reference: Any, seed: int = 0, steps: int = QUICK.steps, strength: float = 0.0,
            **_unused: Any) -> Output:
        result = run_universal_guidance(prompt, guide or STYLE, reference, None, network, steps, forward=guide is not None,
                                        strength=strength or (PAPER[guide].forward_strength if guide else 0.0),
                                        seed=seed, compare_plain=False)
        scores = dict(result.similarity) if result.similarity else None
        return Output(image=result.image, scores=scores)
    return run


COMPARE_METHODS = [
    Method(GUIDED_IMAGE, "Plain SD (DDIM)", _compare(None), {"seed": 0, "steps": QUICK.steps}),
    Method(GUIDED_IMAGE, "Universal guidance: identity (ArcFace)", _compare(IDENTITY),
           {"seed": 0, "steps": QUICK.steps, "strength": PAPER[IDENTITY].forward_strength}),
    Method(GUIDED_IMAGE, "Universal guidance: identity (FaceNet)", _compare(IDENTITY, "FaceNet (VGGFace2)"),
           {"seed": 0, "steps": QUICK.steps, "strength": PAPER[IDENTITY].forward_strength}),
    Method(GUIDED_IMAGE, "Universal guidance: segmentation", _compare(SEGMENTATION),
           {"seed": 0, "steps": QUICK.steps, "strength": PAPER[SEGMENTATION].forward_strength}),
    Method(GUIDED_IMAGE, "Universal guidance: CLIP style", _compare(STYLE),
           {"seed": 0, "steps": QUICK.steps, "strength": PAPER[STYLE].forward_strength}),
]


def _paper_example(which: str) -> list:
    """One example row that loads the paper's settings for a guide, so a click reproduces its figure."""
    settings = PAPER[which]
    picture = {IDENTITY: "astronaut.jpg", SEGMENTATION: "astronaut.jpg", STYLE: "chelsea.jpg"}[which]
    return [DEFAULT_PROMPT, which, str(ASSETS / picture), True, settings.forward_strength, settings.recurrence,
            settings.steps]


def layout() -> SimpleNamespace:
    """The tab's widgets, placed; `build_ui` wires them."""
    import gradio as gr

    from demos.shared.widgets import MATH, RESULT, seed_controls

    gr.Markdown(
        "Steer Stable Diffusion 1.5 with an **off-the-shelf network** that was never trained on noisy images. At "
        "each DDIM step the clean-image estimate $\\hat z_0$ is decoded by the VAE and scored by the guide: *forward "
        "guidance* adds $s\\,\\sqrt{1-\\bar\\alpha}\\,\\nabla\\ell$ to the noise prediction, *backward guidance* "
        "optimises a correction Δ of $\\hat z_0$ with m Adam steps, and *self-recurrence* re-noises and repeats each "
        "step k times. Identity is "
        f"reported by a second network ({JUDGE}) that is not the guide. " + LICENCE_NOTE, latex_delimiters=MATH
    )
    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(label="Prompt", value=DEFAULT_PROMPT, lines=2)
            guide = gr.Radio(list(GUIDES), value=IDENTITY, label="Guide")
            with gr.Row():
                reference = gr.Image(label="Reference (face photo / style image / photo to parse)", type="pil",
                                     image_mode=None, height=200, value=str(ASSETS / "astronaut.jpg"))
                mask = gr.Image(label="Segmentation mask (optional; white = face)", type="pil", image_mode=None,
                                height=200)
            network = gr.Radio(list(IDENTITY_NETWORKS), value="ArcFace (insightface)", label="Identity network (guide)")
            with gr.Accordion("Universal guidance", open=True):
                with gr.Row():
                    forward = gr.Checkbox(value=True, label="Forward guidance")
                    strength = gr.Number(value=QUICK.forward_strength, minimum=0, label="Strength s")
                    decay = gr.Checkbox(value=False, label="s decays to 0")
                with gr.Row():
                    backward = gr.Checkbox(value=False, label="Backward guidance")
                    backward_steps = gr.Slider(1, MAX_BACKWARD_STEPS, value=2, step=1, label="Backward Adam steps m")
                    recurrence = gr.Slider(1, MAX_RECURRENCE, value=QUICK.recurrence, step=1,
                                           label="Self-recurrence k")
                with gr.Row():
                    steps = gr.Slider(1, LIMITS.max_steps, value=QUICK.steps, step=1, label="DDIM steps",
                                      elem_id="ug-steps")
                    fraction = gr.Slider(0, 1, value=QUICK.guided_fraction, step=0.05, label="Guide the first fraction")
                    cfg = gr.Slider(1, 20, value=QUICK.guidance_scale, step=0.5, label="CFG scale")
                resolution = gr.Radio(list(GUIDE_SCALES), value="full",
                                      label="Guide image resolution (decode a downsampled ẑ0: cheaper)")
                compare = gr.Checkbox(value=True, label="Also run plain SD (same seed) to compare")
            seed, randomize = seed_controls(0)
            generate = gr.Button("Generate with universal guidance", variant="primary")
        with gr.Column():
            with gr.Row(elem_id="ug-results"):
                image = gr.Image(label="Universal guidance (PNG)", type="filepath", format="png",
                                 elem_id="ug-image", elem_classes=RESULT)
                plain = gr.Image(label="Plain SD, same seed", type="filepath", format="png", elem_classes=RESULT)
                target_view = gr.Image(label="Guide target", format="png", elem_classes=RESULT)
            info = gr.Markdown(elem_id="ug-summary")
            plot = gr.Plot(label="Guide loss per step")
    filmstrip = gr.Gallery(label="Predicted x0 (decoded ẑ0) along the guided trajectory", columns=6, height=200,
                           format="png", elem_id="ug-filmstrip")

    gr.Examples(
        examples=[_paper_example(which) for which in GUIDES],
        example_labels=[f"Paper settings: {which} (s = {PAPER[which].forward_strength:g}, k = {PAPER[which].recurrence}, "
                        f"{PAPER[which].steps} steps)" for which in GUIDES],
        inputs=[prompt, guide, reference, forward, strength, recurrence, steps],
        label="Examples (public-domain photos from scikit-image)",
    )
    return SimpleNamespace(
        prompt=prompt, guide=guide, reference=reference, mask=mask, network=network, forward=forward,
        strength=strength, decay=decay, backward=backward, backward_steps=backward_steps, recurrence=recurrence,
        steps=steps, fraction=fraction, cfg=cfg, resolution=resolution, compare=compare, seed=seed,
        randomize=randomize, generate=generate, image=image, plain=plain, target_view=target_view, info=info,
        plot=plot, filmstrip=filmstrip)


def build_ui() -> None:
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import scroll_into_view_on

    w = layout()

    @user_errors
    def generate_for_ui(prompt, guide, reference, mask, network, steps, cfg, forward, strength, backward, backward_steps,
                        recurrence, fraction, decay, resolution, seed, randomize, compare,
                        progress=gr.Progress(track_tqdm=True)):
        result = run_universal_guidance(prompt, guide, reference, mask, network, steps, cfg, forward, strength, backward,
                                        backward_steps, recurrence, fraction, decay, resolution, seed, randomize,
                                        compare, progress)
        plain_png = (png_with_parameters(result.plain_image, {**result.parameters, "forward_strength": 0,
                                                              "backward_steps": 0, "recurrence": 1}, "plain-sd")
                     if result.plain_image is not None else None)
        return (png_with_parameters(result.image, result.parameters, "universal-guidance"), plain_png,
                result.target_view, summary(result), loss_figure(result), result.filmstrip, result.parameters["seed"])

    w.generate.click(generate_for_ui,
                     inputs=[w.prompt, w.guide, w.reference, w.mask, w.network, w.steps, w.cfg, w.forward, w.strength,
                             w.backward, w.backward_steps, w.recurrence, w.fraction, w.decay, w.resolution, w.seed,
                             w.randomize, w.compare],
                     outputs=[w.image, w.plain, w.target_view, w.info, w.plot, w.filmstrip, w.seed],
                     api_name="universal_guidance")
    scroll_into_view_on(w.generate, "ug-results")
