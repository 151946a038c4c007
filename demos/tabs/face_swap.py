"""DiffFace-style face swap (Kim et al. 2022, "DiffFace: Diffusion-based Face Swapping with Facial
Guidance"), training-free on an off-the-shelf face DDPM.

Both faces are detected and FFHQ-aligned. Sampling starts from the noised aligned target; at
every step the predicted clean image is pulled toward the source identity (ArcFace or FaceNet), toward the
target's face parse (shape and expression) and toward the target's colours, while the mask M_t
keeps the noised target outside a face region that grows from nothing to the full face mask.
The best of N candidates (scored by a second, independent face network) is pasted back into
the photo under a feathered mask.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from PIL import Image

import models
from demos import ASSETS
from demos.shared.comparison import Field, Method, Output, Task
from demos.shared.generation import generator_for, png_with_parameters, resolve_seed
from demos.shared.inputs import number_in_range, rgb_image
from demos.shared.limits import LIMITS
from models import ProgressFn, UserError
from models.arcface import ARCFACE, LICENCE_NOTE, template_matrix
from models.faces import FACE_CLASSES, AlignedFace, Face, align_face, invert
from models.pipelines.face_swap import (LossFn, SwapTrace, face_swap_sample, face_views, identity_loss,
                                        parsing_loss, reconstruction_loss)

PRIOR, JUDGE, PARSER, DETECTOR = ("ddpm-celebahq-256", "facenet-casia-webface", "face-parser-segformer",
                                   "face-detector-mtcnn")
# The identity guide: DiffFace's own choice is ArcFace (5-point aligned 112² crops); FaceNet (a square crop of the
# detection box) is the alternative. The judge is a third network, FaceNet trained on CASIA-WebFace.
GUIDES = {"ArcFace (insightface)": ARCFACE, "FaceNet (VGGFace2)": "facenet-vggface2"}
DEFAULT_GUIDE = "ArcFace (insightface)"
MIN_FACE_SIDE = 40  # detection box side in pixels: smaller faces have too little detail to swap
IDENTITY_VIEWS = 8  # 1 clean + 7 augmented crops per identity-loss evaluation (DiffFace)
LAMBDA_NOTE = (
    "Each λ is a step size: every step moves the sample by $-\\lambda\\,\\tilde\\beta_t\\,\\nabla L$. **Too large a λ overshoots**: the loss "
    "stops falling and rises again, the face breaks into artefacts and the result depends on tiny numerical "
    "differences. Too small a λ leaves the target's identity. DiffFace's 6000 was tuned for its own ArcFace "
    "guide; with FaceNet, sweep λ_id (e.g. 2k–20k) in the Compare tab."
)
MAX_CANDIDATES = 8
MAX_LAMBDA = 1e6  # loss weights; DiffFace's λ_id is 6000
MAX_FACES = 100  # a target face number beyond this is a typo
ETHICS_NOTE = (
    "**Use with consent.** Swap only faces of people who agreed to it, and never present the result as a "
    "real photo: face swaps can deceive, defame and harass. Every image saved from this tab carries PNG "
    "metadata saying it was generated."
)


@dataclass
class SwapSettings:
    steps: int = 100  # respaced DDPM steps (DiffFace: 100)
    start_noise: float = 0.75  # fraction of the schedule that is run: skip the first 25 of 100
    lambda_id: float = 6000.0
    lambda_seg: float = 200.0
    lambda_rec: float = 50.0
    mask_threshold: int = 30  # λ of the M_t schedule, a respaced step index (DiffFace: 30)
    candidates: int = 4  # best of N by identity (DiffFace draws 4)

    @property
    def skip(self) -> int:
        return self.steps - self.steps_run

    @property
    def steps_run(self) -> int:
        return max(1, round(self.steps * self.start_noise))


QUICK = SwapSettings(steps=10, start_noise=0.8, mask_threshold=3, candidates=2)  # the page's default: a class
# demo that answers in seconds; the paper's settings (SwapSettings()) are one click away in the examples


class StepCost:
    """Seconds per guided step (one candidate) on this machine: the fastest run so far, so that a first
    run's model loading does not inflate the estimate shown before the next run."""

    def __init__(self) -> None:
        self.seconds: float | None = None

    def record(self, seconds: float, guided_steps: int) -> None:
        per_step = seconds / max(1, guided_steps)
        self.seconds = per_step if self.seconds is None else min(self.seconds, per_step)


STEP_COST = StepCost()


def expected_time(steps: Any, start_noise: Any, candidates: Any, cost: StepCost = STEP_COST) -> str:
    """What the next run will cost: guided steps × candidates, and seconds once a run has measured a step."""
    try:
        settings = SwapSettings(steps=int(steps), start_noise=float(start_noise), candidates=int(candidates))
    except (TypeError, ValueError):
        return ""
    total = settings.steps_run * settings.candidates
    text = f"**This run:** {settings.steps_run} guided steps × {settings.candidates} candidates = {total} steps"
    if cost.seconds is None:
        return text + " · the first run measures the time per step on this machine."
    return text + f" · expected ≈ {total * cost.seconds:.0f} s ({cost.seconds:.2f} s per step measured here)."


def full_mask_step(steps_run: int, threshold: int) -> int:
    """The sampling step (1-based, noisy → clean) from which M_t is the full mask: w(τ) = 1 once τ ≤ λ−1."""
    return steps_run - threshold + 1


@dataclass
class FaceSwapResult:
    image: Image.Image  # the swap pasted back into the full target photo
    target: Image.Image  # the target photo as given (for before/after)
    aligned: dict[str, Image.Image]  # "source", "target", "result": FFHQ-aligned crops
    trajectory: list[tuple[Image.Image, str]]  # predicted x0 along the chosen trajectory
    mask: Image.Image  # M in aligned space
    paste_mask: Image.Image  # the feathered mask in photo space
    schedule: list[float]  # w(τ) per step
    similarity: dict[str, float]  # judge network cosine: source↔result, target↔result, source↔target
    candidate_scores: list[float]  # judge cosine source↔candidate, per candidate
    losses: dict[str, list[float]]  # the chosen trajectory's loss terms per step
    faces_found: int
    seed: int
    parameters: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class SwapRequest:
    """`run_face_swap`'s inputs after `check_inputs`: what the model work reads."""

    source: Image.Image
    target: Image.Image
    target_face: int  # 1 = leftmost
    settings: SwapSettings
    seed: int
    guide: str  # the identity guide's model name


def check_inputs(source: Any, target: Any, target_face: Any = 1, steps: Any = 100, start_noise: Any = 0.75,
                 lambda_id: Any = 6000.0, lambda_seg: Any = 200.0, lambda_rec: Any = 50.0, mask_threshold: Any = 30,
                 candidates: Any = 4, seed: Any = 404, randomize: bool = False,
                 identity_guide: Any = DEFAULT_GUIDE) -> SwapRequest:
    """Every input checked (a `UserError` saying what to change) before any model loads."""
    source_image = rgb_image(source, "a source face photo")
    target_image = rgb_image(target, "a target photo")
    settings = SwapSettings(
        steps=number_in_range(steps, "Steps (DiffFace uses 100)", 2, LIMITS.max_steps, whole=True),
        start_noise=number_in_range(start_noise, "The start noise level (DiffFace: 0.75)", 0.01, 1),
        lambda_id=number_in_range(lambda_id, "λ_id", 0, MAX_LAMBDA),
        lambda_seg=number_in_range(lambda_seg, "λ_seg", 0, MAX_LAMBDA),
        lambda_rec=number_in_range(lambda_rec, "λ_rec", 0, MAX_LAMBDA),
        mask_threshold=number_in_range(mask_threshold, "The mask-schedule λ", 0, LIMITS.max_steps, whole=True),
        candidates=number_in_range(candidates, "N candidates", 1, MAX_CANDIDATES, whole=True),
    )
    if settings.mask_threshold >= settings.steps_run:
        raise UserError(
            f"The mask-schedule λ must be between 0 and {settings.steps_run - 1}: it is the step index (counting "
            f"down from {settings.steps_run - 1}) where M_t reaches the full mask; {settings.steps} steps at start "
            f"noise {settings.start_noise:g} run {settings.steps_run}. Got {settings.mask_threshold}.")
    face_index = number_in_range(target_face, "The target face (1 = leftmost)", 1, MAX_FACES, whole=True)
    if identity_guide not in GUIDES:
        raise UserError(f"Choose an identity guide: {', '.join(GUIDES)}.")
    return SwapRequest(source_image, target_image, face_index, settings, resolve_seed(seed, randomize),
                       GUIDES[identity_guide])


def feathered_face_mask(mask: np.ndarray, grow: int, blur: int) -> np.ndarray:
    """Dilate a [0,1] mask by `grow` px (a round kernel), then soften its edge over about `blur` px.

    Not `demos.shared.masks.feathered`: this one grows a soft mask with a round kernel (a face outline) and
    blurs it with OpenCV in the aligned crop, before it is warped back into the photo; the
    Paint-by-Example one grows or shrinks a hard mask with a square kernel in scene pixels. Sharing
    one would change the face swap's pixels."""
    import cv2

    out = mask.astype(np.float32)
    if grow > 0:
        out = cv2.dilate(out, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    if blur > 0:
        kernel = 2 * blur + 1
        out = cv2.GaussianBlur(out, (kernel, kernel), blur / 2)
    return np.clip(out, 0, 1)


def paste_face_back(original: np.ndarray, aligned_result: np.ndarray, aligned: AlignedFace,
                    aligned_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Warp an aligned result back into the full photo under a (feathered) aligned-space mask (the
    inverse of the alignment's rotation and scale; `demos.shared.masks.paste_back` only resizes a square).

    Returns the composite (uint8) and the mask in photo pixels; where it is 0 the photo is untouched."""
    import cv2

    height, width = original.shape[:2]
    back = invert(aligned.matrix)
    warped = cv2.warpAffine(aligned_result, back, (width, height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mask = cv2.warpAffine(aligned_mask.astype(np.float32), back, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
    composite = mask * warped.astype(np.float32) + (1 - mask) * original.astype(np.float32)
    return np.clip(np.rint(composite), 0, 255).astype(np.uint8), mask[..., 0]


def detect_faces(image: Image.Image, what: str, progress: ProgressFn | None = None) -> list[Face]:
    """The faces in `image`, left to right; a `UserError` naming `what` if there is none."""
    faces = models.get(DETECTOR, progress).detect(image)
    if not faces:
        raise UserError(f"No face found in the {what}. Use a photo where the face is visible, roughly frontal "
                        "and not covered.")
    return faces


def _pick(faces: list[Face], index: int, what: str) -> Face:
    if not 1 <= index <= len(faces):
        raise UserError(f"The {what} has {len(faces)} face(s), numbered 1 to {len(faces)} from the left; "
                        f"face {index} does not exist.")
    face = faces[index - 1]
    if face.side < MIN_FACE_SIDE:
        raise UserError(f"The face in the {what} is only {face.side:.0f} pixels wide; it must be at least "
                        f"{MIN_FACE_SIDE} pixels. Use a larger or closer photo.")
    return face


def _tensor(image: np.ndarray, like: torch.nn.Module) -> torch.Tensor:
    """uint8 HWC → [1,3,H,W] in [-1,1] on the module's device and dtype."""
    weight = next(like.parameters())
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
    return pixels.to(weight.device, weight.dtype)


def _uint8(tensor: torch.Tensor) -> np.ndarray:
    pixels = ((tensor[0].detach().float().clamp(-1, 1) + 1) * 127.5).round().byte()
    return pixels.permute(1, 2, 0).cpu().numpy()


def _box(aligned: AlignedFace) -> torch.Tensor:
    return torch.tensor(aligned.box, dtype=torch.float32)


def guide_region(guide: str, aligned: AlignedFace) -> torch.Tensor:
    """Where the guide reads the face in the aligned frame: ArcFace's 5-point template crop (insightface's
    alignment, the same transform for the result: pose is kept), or FaceNet's square detection box."""
    if guide == ARCFACE:
        return torch.from_numpy(template_matrix(aligned.landmarks))
    return _box(aligned)


def _judge_similarity(judge: Any, first: torch.Tensor, first_box: torch.Tensor, second: torch.Tensor,
                      second_box: torch.Tensor) -> float:
    with torch.no_grad():
        a = judge.embed(face_views(first, first_box, judge.image_size))
        b = judge.embed(face_views(second, second_box, judge.image_size))
    return float(torch.nn.functional.cosine_similarity(a.float(), b.float()).item())


@dataclass
class PreparedFaces:
    """Both faces aligned to the prior's frame, with what the guidance, the judge and the paste-back read of
    them: computed once, before the N candidates, because every candidate starts from the same faces."""

    size: int  # the prior's side in pixels
    target_photo: np.ndarray  # the target photo's pixels, where the swap is pasted back
    aligned_source: AlignedFace
    aligned_target: AlignedFace
    x_source: torch.Tensor  # [1,3,H,W] in [-1,1]
    x_target: torch.Tensor
    source_box: torch.Tensor  # the judge's crop of each face
    target_box: torch.Tensor
    target_region: torch.Tensor  # where the identity guide reads the sample
    target_logits: torch.Tensor  # the target's face parse: the shape and expression to keep
    mask: torch.Tensor  # M [1,1,H,W]: the face region the swap may change
    source_embedding: torch.Tensor  # the identity to put there, by the guide


def _choose_faces(request: SwapRequest, progress: ProgressFn | None) -> tuple[Face, Face, int]:
    """The largest face of the source, the requested face of the target, and how many faces the target has."""
    source_faces = detect_faces(request.source, "source image", progress)
    target_faces = detect_faces(request.target, "target image", progress)
    source_face = _pick(source_faces, 1 + int(np.argmax([face.side for face in source_faces])), "source image")
    return source_face, _pick(target_faces, request.target_face, "target image"), len(target_faces)


def _prepare_faces(request: SwapRequest, source_face: Face, target_face: Face, prior: Any, guide: Any,
                   parser: Any) -> PreparedFaces:
    """Align both faces to the prior's size and read the target's parse, its face mask M and the source's
    identity; a `UserError` if the parser finds no face to swap."""
    size = prior.unet.config.sample_size
    target_photo = np.asarray(request.target)
    aligned_source = align_face(np.asarray(request.source), source_face, size)
    aligned_target = align_face(target_photo, target_face, size)
    x_source = _tensor(aligned_source.image, prior.unet)
    x_target = _tensor(aligned_target.image, prior.unet)
    source_box, target_box = _box(aligned_source), _box(aligned_target)
    source_region, target_region = (guide_region(request.guide, aligned)
                                    for aligned in (aligned_source, aligned_target))

    with torch.no_grad():
        target_logits = parser.logits(x_target)
        mask = parser.face_mask(target_logits).to(x_target.dtype)
        source_embedding = guide.embed(face_views(x_source, source_region, guide.image_size))
    if not mask.any():
        raise UserError("The face parser found no skin, eyes, nose or mouth in the target face; try another photo.")
    return PreparedFaces(size, target_photo, aligned_source, aligned_target, x_source, x_target, source_box,
                         target_box, target_region, target_logits, mask, source_embedding)


def _guidance_losses(settings: SwapSettings, guide: Any, parser: Any, faces: PreparedFaces,
                     augment: torch.Generator) -> dict[str, tuple[float, LossFn]]:
    """DiffFace's three guidance terms, each with its λ: the source's identity, the target's face parse
    (shape and expression) and the target's colours."""
    return {
        "identity": (settings.lambda_id, identity_loss(guide.embed, faces.source_embedding, faces.mask,
                                                       faces.target_region, guide.image_size, IDENTITY_VIEWS,
                                                       augment)),
        "parsing": (settings.lambda_seg, parsing_loss(parser.logits, faces.target_logits, FACE_CLASSES)),
        "reconstruction": (settings.lambda_rec, reconstruction_loss(faces.x_target)),
    }


def _candidate_progress(progress: ProgressFn | None, candidate: int, candidates: int):
    """The sampler's per-step callback: progress over the steps of all candidates, not of this one only."""
    def report(done: int, total: int) -> None:
        if progress is not None:
            progress((candidate * total + done) / (candidates * total),
                     desc=f"candidate {candidate + 1}/{candidates}, step {done}/{total}")
    return report


def _best_candidate(prior: Any, guide: Any, judge: Any, parser: Any, faces: PreparedFaces, settings: SwapSettings,
                    seed: int, progress: ProgressFn | None) -> tuple[int, SwapTrace, list[float]]:
    """DiffFace's best of N: sample N guided trajectories (candidate k seeded with seed + k) and keep the one
    the judge finds closest to the source. The judge is not the guide, so a candidate that merely fooled
    the guide's loss does not win. Returns the kept index, its trajectory and every candidate's score."""
    best = None
    scores = []
    for candidate in range(settings.candidates):
        augment = torch.Generator().manual_seed(seed + candidate)
        trace = face_swap_sample(prior.unet, prior.scheduler, faces.x_target, faces.mask,
                                 _guidance_losses(settings, guide, parser, faces, augment), steps=settings.steps,
                                 skip=settings.skip, threshold=settings.mask_threshold,
                                 generator=generator_for(seed + candidate, faces.x_target.device),
                                 callback=_candidate_progress(progress, candidate, settings.candidates))
        scores.append(_judge_similarity(judge, faces.x_source, faces.source_box, trace.image, faces.target_box))
        if best is None or scores[-1] > scores[best[0]]:
            best = (candidate, trace)
    chosen, trace = best
    return chosen, trace, scores


def _swap_parameters(request: SwapRequest, chosen: int) -> dict[str, Any]:
    """What the saved PNG records of the run, starting with the statement that it is generated."""
    settings = request.settings
    return {
        "generated": "AI-generated face swap (DiffFace-style diffusion), not a real photograph",
        "seed": request.seed, "steps": settings.steps, "start_noise": settings.start_noise, "skip": settings.skip,
        "lambda_id": settings.lambda_id, "lambda_seg": settings.lambda_seg, "lambda_rec": settings.lambda_rec,
        "mask_threshold": settings.mask_threshold, "candidates": settings.candidates, "chosen_candidate": chosen + 1,
        "target_face": request.target_face, "identity_guide": request.guide,
        "models": [PRIOR, request.guide, JUDGE, PARSER, DETECTOR], "profile": models.model_settings.profile,
    }


def _swap_result(request: SwapRequest, faces: PreparedFaces, judge: Any, chosen: int, trace: SwapTrace,
                 scores: list[float], faces_found: int, started: float) -> FaceSwapResult:
    """Paste the kept candidate back into the target photo under a feathered mask, and gather what the tab
    shows of the run: the aligned crops, the trajectory, the masks and the judge's similarities."""
    result_aligned = _uint8(trace.image)
    face_mask = faces.mask[0, 0].float().cpu().numpy()
    paste_mask_aligned = feathered_face_mask(face_mask, grow=max(1, faces.size // 64), blur=max(1, faces.size // 32))
    composite, paste_mask = paste_face_back(faces.target_photo, result_aligned, faces.aligned_target,
                                            paste_mask_aligned)
    similarity = {
        "source↔result": scores[chosen],
        "target↔result": _judge_similarity(judge, faces.x_target, faces.target_box, trace.image, faces.target_box),
        "source↔target": _judge_similarity(judge, faces.x_source, faces.source_box, faces.x_target, faces.target_box),
    }
    return FaceSwapResult(
        image=Image.fromarray(composite),
        target=request.target,
        aligned={"source": Image.fromarray(faces.aligned_source.image),
                 "target": Image.fromarray(faces.aligned_target.image), "result": Image.fromarray(result_aligned)},
        trajectory=[(Image.fromarray(_uint8(x0)), f"x0 at t={t}") for t, x0 in trace.x0],
        mask=Image.fromarray((face_mask * 255).astype(np.uint8)),
        paste_mask=Image.fromarray((paste_mask * 255).round().astype(np.uint8)),
        schedule=trace.weights,
        similarity=similarity,
        candidate_scores=scores,
        losses=trace.losses,
        faces_found=faces_found,
        seed=request.seed,
        parameters=_swap_parameters(request, chosen),
        seconds=time.perf_counter() - started,
    )


def run_face_swap(
    source: Any,
    target: Any,
    target_face: int = 1,
    steps: int = 100,
    start_noise: float = 0.75,
    lambda_id: float = 6000.0,
    lambda_seg: float = 200.0,
    lambda_rec: float = 50.0,
    mask_threshold: int = 30,
    candidates: int = 4,
    seed: Any = 404,
    randomize: bool = False,
    identity_guide: str = DEFAULT_GUIDE,
    progress: ProgressFn | None = None,
) -> FaceSwapResult:
    """Put the identity of the face in `source` onto face `target_face` (1 = leftmost) of `target`."""
    request = check_inputs(source, target, target_face, steps, start_noise, lambda_id, lambda_seg, lambda_rec,
                           mask_threshold, candidates, seed, randomize, identity_guide)
    source_face, swapped_face, faces_found = _choose_faces(request, progress)
    prior = models.get(PRIOR, progress)
    guide, judge, parser = (models.get(name, progress) for name in (request.guide, JUDGE, PARSER))
    started = time.perf_counter()  # after loading: the time shown is the swap's own
    faces = _prepare_faces(request, source_face, swapped_face, prior, guide, parser)
    chosen, trace, scores = _best_candidate(prior, guide, judge, parser, faces, request.settings, request.seed,
                                            progress)
    return _swap_result(request, faces, judge, chosen, trace, scores, faces_found, started)


def preview_faces(target: Any, progress: ProgressFn | None = None) -> tuple[Image.Image, int]:
    """The target photo with every detected face boxed and numbered (1 = leftmost), and the count."""
    from PIL import ImageDraw

    image = rgb_image(target, "a target photo")
    faces = detect_faces(image, "target image", progress)
    drawn = image.copy()
    draw = ImageDraw.Draw(drawn)
    width = max(2, image.width // 200)
    for number, face in enumerate(faces, start=1):
        colour = (0, 220, 0) if face.side >= MIN_FACE_SIDE else (230, 0, 0)
        draw.rectangle(face.box.tolist(), outline=colour, width=width)
        for x, y in face.landmarks:
            draw.ellipse([x - width, y - width, x + width, y + width], fill=colour)
        draw.text((face.box[0] + width, face.box[1] + width), str(number), fill=colour,
                  font_size=max(12, int(face.side / 4)))
    return drawn, len(faces)


# ---- presentation ----------------------------------------------------------------------------

def schedule_plot(result: FaceSwapResult):
    """w(τ) of M_t = M·w(τ) per sampling step, and the guidance loss terms along the way."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.2), layout="constrained")
    axes = figure.subplots()
    steps = np.arange(1, len(result.schedule) + 1)
    axes.plot(steps, result.schedule, color="tab:blue", label="w(τ): M_t = M·w(τ)")
    axes.axvline(full_mask_step(len(result.schedule), result.parameters["mask_threshold"]), color="tab:blue", ls=":",
                 label=f"λ = {result.parameters['mask_threshold']}")
    axes.set_xlabel("sampling step (noisy → clean)")
    axes.set_ylabel("mask weight")
    axes.set_ylim(-0.05, 1.05)
    if result.losses:
        twin = axes.twinx()
        for name, values in result.losses.items():
            peak = max(abs(v) for v in values) or 1.0
            symbol = {"identity": "L_id", "parsing": "L_seg", "reconstruction": "L_rec"}.get(name, name)
            twin.plot(steps[: len(values)], np.asarray(values) / peak, ls="--", label=f"{symbol} (÷{peak:.3g})")
        twin.set_ylabel("loss / its max")
        twin.legend(loc="center right", fontsize=7)
    axes.legend(loc="upper left", fontsize=7)
    axes.set_title("Target-preserving mask schedule and guidance losses", fontsize=9)
    return figure


def _summary(result: FaceSwapResult) -> str:
    sim = result.similarity
    scores = ", ".join(f"{score:.3f}" for score in result.candidate_scores)
    return (
        f"**Identity (judge: {JUDGE}; guide: {result.parameters['identity_guide']})** · source↔result **{sim['source↔result']:.3f}** · "
        f"target↔result {sim['target↔result']:.3f} · source↔target {sim['source↔target']:.3f}\n\n"
        f"Candidates (source↔candidate): {scores} → kept #{result.parameters['chosen_candidate']} · "
        f"{result.faces_found} face(s) in the target · seed {result.seed} · "
        f"{result.parameters['steps']} steps, skip {result.parameters['skip']} · {result.seconds:.1f} s"
    )


SWAP = Task("source face + target photo → swap", (
    Field("source", "Source face (identity)", "image"),
    Field("target", "Target photo", "image"),
    Field("seed", "Seed", "number", 0),  # one widget per field name in Compare: the same as the other tasks
))


def _compare_swap(guide: str):
    def run(source: Any, target: Any, seed: int = 404, steps: int = QUICK.steps, lambda_id: float = QUICK.lambda_id,
            **_unused: Any) -> Output:
        result = run_face_swap(source, target, 1, steps, QUICK.start_noise, lambda_id, QUICK.lambda_seg,
                               QUICK.lambda_rec, QUICK.mask_threshold, QUICK.candidates, seed, identity_guide=guide)
        return Output(image=result.image, scores={"judge source↔result": result.similarity["source↔result"]})
    return run


COMPARE_METHODS = [Method(SWAP, f"Face swap, {guide} guide", _compare_swap(guide),
                          {"seed": 404, "steps": QUICK.steps, "lambda_id": QUICK.lambda_id}) for guide in GUIDES]


def _example_row(source_name: str, target_name: str, settings: SwapSettings) -> list:
    """One row of the examples table: the two photos, face 1 and the sampler `settings`."""
    return [str(ASSETS / source_name), str(ASSETS / target_name), 1, settings.steps, settings.start_noise,
            settings.lambda_id, settings.lambda_seg, settings.lambda_rec, settings.mask_threshold,
            settings.candidates]


def _examples(inputs: list) -> None:
    """The quick class-demo settings and the paper's full ones, on public-domain photos."""
    import gradio as gr

    full = SwapSettings()
    gr.Examples(  # labelled rows: a ten-column table ran off the side of the page
        examples=[_example_row("astronaut.jpg", "camera.jpg", QUICK),
                  _example_row("camera.jpg", "astronaut.jpg", full)],
        example_labels=[f"Quick: {QUICK.steps} steps × {QUICK.candidates} candidates",
                        f"Full quality (DiffFace): {full.steps} steps × {full.candidates} candidates"],
        inputs=inputs,
        label="Examples (public-domain photos from scikit-image)",
    )


def layout() -> SimpleNamespace:
    """The tab's widgets, placed; `build_ui` wires them."""
    import gradio as gr

    from demos.shared.widgets import MATH, seed_controls

    gr.Markdown(
        "Swap the **identity** of the source face onto a face of the target photo, keeping the target's pose, "
        "expression, lighting and background. A face diffusion model (DDPM, CelebA-HQ) starts from the noised "
        "target; each step its predicted clean face x0 is pushed toward the source identity (λ_id, ArcFace or FaceNet), "
        "the target's face parse (λ_seg) and colours (λ_rec), and outside the growing mask M_t the noised "
        "target is put back. The best of N candidates, judged by a *second* face network, is pasted back."
    )
    gr.Markdown(ETHICS_NOTE, elem_id="face-swap-ethics")
    gr.Markdown(LICENCE_NOTE)
    with gr.Row():
        with gr.Column():
            with gr.Row():
                source = gr.Image(label="Source face (identity)", type="pil", image_mode=None, height=240,
                                  sources=["upload", "clipboard", "webcam"])
                target = gr.Image(label="Target photo (pose, expression, background)", type="pil",
                                  image_mode=None, height=240, sources=["upload", "clipboard", "webcam"])
            with gr.Row():
                faces = gr.Image(label="Faces found in the target (1 = leftmost)", type="pil", height=200,
                                 interactive=False, format="png")
                target_face = gr.Number(label="Target face number", value=1, precision=0, minimum=1)
            with gr.Accordion("Sampler", open=True):
                with gr.Row():
                    steps = gr.Slider(2, LIMITS.max_steps, value=QUICK.steps, step=1, label="Steps (respaced)")
                    start_noise = gr.Slider(0.05, 1.0, value=QUICK.start_noise, step=0.05,
                                            label="Start noise (fraction of the steps run)")
                with gr.Row():
                    lambda_id = gr.Number(label="λ_id (identity)", value=QUICK.lambda_id, minimum=0)
                    lambda_seg = gr.Number(label="λ_seg (face parse)", value=QUICK.lambda_seg, minimum=0)
                    lambda_rec = gr.Number(label="λ_rec (colours)", value=QUICK.lambda_rec, minimum=0)
                gr.Markdown(LAMBDA_NOTE, latex_delimiters=MATH)
                identity_guide = gr.Radio(list(GUIDES), value=DEFAULT_GUIDE,
                                          label="Identity guide (DiffFace: ArcFace; the judge is a third network)")
                with gr.Row():
                    mask_threshold = gr.Slider(0, LIMITS.max_steps - 1, value=QUICK.mask_threshold, step=1,
                                               label="Mask-schedule λ (step index where M_t = M)")
                    candidates = gr.Slider(1, MAX_CANDIDATES, value=QUICK.candidates, step=1,
                                           label="N candidates (best by identity)")
                seed, randomize = seed_controls(default=404)
            estimate = gr.Markdown(expected_time(QUICK.steps, QUICK.start_noise, QUICK.candidates),
                                   elem_id="face-swap-estimate")
            swap = gr.Button("Swap faces", variant="primary")
        with gr.Column():
            result = gr.Image(label="Result (PNG with generation metadata)", type="filepath", format="png",
                              elem_id="face-swap-result")
            summary = gr.Markdown(elem_id="face-swap-summary")
            # Gradio 6's own slider: gradio_imageslider 0.0.20 crashes the page when it shows an output.
            slider = gr.ImageSlider(label="Before / after", type="pil", format="png", interactive=False)
    with gr.Row():
        aligned = gr.Gallery(label="FFHQ-aligned source, target, result (the prior's size: 256² in the hub profile)", columns=3, height=220,
                             format="png")
        trajectory = gr.Gallery(label="Predicted x0 along the trajectory", columns=4, height=220, format="png")
    with gr.Row():
        masks = gr.Gallery(label="Face mask M (aligned) and feathered paste-back mask", columns=2, height=220,
                           format="png")
        plot = gr.Plot(label="M_t schedule")
    _examples([source, target, target_face, steps, start_noise, lambda_id, lambda_seg, lambda_rec, mask_threshold,
               candidates])
    return SimpleNamespace(
        source=source, target=target, faces=faces, target_face=target_face, steps=steps, start_noise=start_noise,
        lambda_id=lambda_id, lambda_seg=lambda_seg, lambda_rec=lambda_rec, identity_guide=identity_guide,
        mask_threshold=mask_threshold, candidates=candidates, seed=seed, randomize=randomize, estimate=estimate,
        swap=swap, result=result, summary=summary, slider=slider, aligned=aligned, trajectory=trajectory,
        masks=masks, plot=plot)


def _swap_outputs(out: FaceSwapResult) -> tuple:
    """A run as the tab shows it: the PNG with its metadata, the summary, before/after, the aligned crops,
    the trajectory, both masks, the schedule plot and the seed used."""
    aligned_items = [(out.aligned[key], key) for key in ("source", "target", "result")]
    masks = [(out.mask, "M (aligned)"), (out.paste_mask, "paste-back mask")]
    return (png_with_parameters(out.image, out.parameters, stem="face-swap"), _summary(out), (out.target, out.image),
            aligned_items, out.trajectory, masks, schedule_plot(out), out.seed)


def build_ui() -> None:
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import scroll_into_view_on

    w = layout()

    @user_errors
    def find_faces(target, progress=gr.Progress(track_tqdm=True)):
        if target is None:
            return None, 1
        drawn, count = preview_faces(target, progress)
        return drawn, gr.Number(value=1, maximum=count)

    @user_errors
    def swap_for_ui(source, target, target_face, steps, start_noise, lambda_id, lambda_seg, lambda_rec,
                    mask_threshold, candidates, seed, randomize, identity_guide, progress=gr.Progress(track_tqdm=True)):
        out = run_face_swap(source, target, target_face, steps, start_noise, lambda_id, lambda_seg, lambda_rec,
                            mask_threshold, candidates, seed, randomize, identity_guide, progress)
        STEP_COST.record(out.seconds, out.parameters["candidates"] * (out.parameters["steps"] - out.parameters["skip"]))
        return _swap_outputs(out)

    w.target.change(find_faces, inputs=w.target, outputs=[w.faces, w.target_face], api_name="face_swap_faces")
    swap_done = w.swap.click(
        swap_for_ui,
        inputs=[w.source, w.target, w.target_face, w.steps, w.start_noise, w.lambda_id, w.lambda_seg, w.lambda_rec,
                w.mask_threshold, w.candidates, w.seed, w.randomize, w.identity_guide],
        outputs=[w.result, w.summary, w.slider, w.aligned, w.trajectory, w.masks, w.plot, w.seed],
        api_name="face_swap")
    scroll_into_view_on(w.swap, "face-swap-result")
    sampler_size = [w.steps, w.start_noise, w.candidates]
    gr.on([w.steps.change, w.start_noise.change, w.candidates.change], expected_time, inputs=sampler_size,
          outputs=w.estimate, api_visibility="private")
    swap_done.success(expected_time, inputs=sampler_size, outputs=w.estimate, api_visibility="private")
