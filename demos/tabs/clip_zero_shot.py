"""CLIP zero-shot classification (Radford et al. 2021, "Learning Transferable Visual Models From
Natural Language Supervision").

Each label becomes one or more prompts ("a photo of a {}."); the text encoder embeds them, the
embeddings of a label's prompts are averaged (prompt ensembling, as in the paper), and the
image is scored by cosine similarity, scaled by CLIP's learned temperature and softmaxed over
the given labels.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

import models
from demos import ASSETS
from demos.shared.comparison import PICTURE, Field, Method, Output, Task
from demos.shared.inputs import one_of, rgb_image, text_items
from demos.shared.limits import LIMITS
from models import ProgressFn, UserError

CLIP_MODELS = ["clip-vit-base-patch32", "clip-vit-base-patch16", "clip-vit-large-patch14"]
DEFAULT_TEMPLATE = "a photo of a {}."
# The seven templates the CLIP authors selected for ImageNet ensembling (their prompt notebook).
PAPER_ENSEMBLE = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]
MAX_TEMPLATES = 16


@dataclass
class ZeroShotResult:
    labels: list[str]
    probabilities: list[float]  # softmax over the given labels, in the given order
    similarities: list[float]  # cosine similarity of the image and each label's text embedding
    prompts: list[list[str]]  # per label, the exact texts sent to the text encoder
    model: str
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def top(self, k: int) -> list[tuple[str, float]]:
        ranked = sorted(zip(self.labels, self.probabilities), key=lambda pair: -pair[1])
        return ranked[:k]


@dataclass
class SimilarityResult:
    image_names: list[str]
    texts: list[str]
    similarities: np.ndarray  # [images, texts] cosine similarity
    probabilities: np.ndarray  # [images, texts] softmax over the texts, per image
    prompts: list[str]
    model: str
    seconds: float
    warnings: list[str] = field(default_factory=list)


def parse_templates(templates: str | Sequence[str] | None) -> list[str]:
    """One template per line, each holding `{}` where the label goes."""
    if templates is None or (isinstance(templates, str) and not templates.strip()):
        return [DEFAULT_TEMPLATE]
    lines = templates.splitlines() if isinstance(templates, str) else list(templates)
    parsed = [line.strip() for line in lines if line.strip()]
    missing = [line for line in parsed if "{}" not in line]
    if missing:
        raise UserError(f"Each template needs {{}} where the label goes; this one has none: {missing[0]!r}")
    if len(parsed) > MAX_TEMPLATES:
        raise UserError(f"At most {MAX_TEMPLATES} templates at once (got {len(parsed)}).")
    return parsed


def _clip(model: str, progress: ProgressFn | None) -> Any:
    return models.get(one_of(model, "CLIP model", CLIP_MODELS), progress)


def _pooled(output: Any) -> torch.Tensor:
    """transformers 5 returns an output object from get_*_features; 4.x returned the tensor."""
    return getattr(output, "pooler_output", output)


@torch.inference_mode()
def _image_embeddings(handle: Any, images: list) -> torch.Tensor:
    pixels = handle.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    features = handle.model.get_image_features(pixel_values=pixels.to(handle.device, handle.model.dtype))
    return F.normalize(_pooled(features).float(), dim=-1)


@torch.inference_mode()
def _text_embeddings(handle: Any, labels: list[str], templates: list[str]) -> tuple[torch.Tensor, list[list[str]], list[str]]:
    """One unit embedding per label: the normalised mean of its prompts' normalised embeddings."""
    prompts = [[template.replace("{}", label) for template in templates] for label in labels]
    flat = [prompt for group in prompts for prompt in group]
    tokenizer = handle.processor.tokenizer
    limit = tokenizer.model_max_length
    too_long = [prompt for prompt, ids in zip(flat, tokenizer(flat).input_ids) if len(ids) > limit]
    warnings = [f"{len(too_long)} prompt(s) exceed CLIP's {limit}-token limit and were cut, e.g. {too_long[0][:60]!r}…"] if too_long else []
    tokens = tokenizer(flat, padding=True, truncation=True, max_length=limit, return_tensors="pt").to(handle.device)
    features = F.normalize(_pooled(handle.model.get_text_features(**tokens)).float(), dim=-1)
    per_label = features.view(len(labels), len(templates), -1).mean(dim=1)
    return F.normalize(per_label, dim=-1), prompts, warnings


def _temperature(handle: Any) -> float:
    return float(handle.model.logit_scale.detach().float().exp())


def run_clip_zero_shot(
    image: Any,
    labels: str | Sequence[str],
    templates: str | Sequence[str] | None = DEFAULT_TEMPLATE,
    model: str = CLIP_MODELS[0],
    progress: ProgressFn | None = None,
) -> ZeroShotResult:
    """Score one image against candidate labels; probabilities are relative to these labels only."""
    picture = rgb_image(image, "an image to classify")
    label_list = text_items(labels, "label", LIMITS.max_labels)
    template_list = parse_templates(templates)
    handle = _clip(model, progress)
    started = time.perf_counter()
    image_embedding = _image_embeddings(handle, [picture])
    text_embedding, prompts, warnings = _text_embeddings(handle, label_list, template_list)
    similarities = (image_embedding @ text_embedding.T)[0]
    probabilities = (_temperature(handle) * similarities).softmax(dim=-1)
    return ZeroShotResult(
        labels=label_list,
        probabilities=probabilities.tolist(),
        similarities=similarities.tolist(),
        prompts=prompts,
        model=model,
        seconds=time.perf_counter() - started,
        warnings=warnings,
    )


def run_clip_similarity(
    images: Sequence[Any],
    texts: str | Sequence[str],
    template: str = "{}",
    model: str = CLIP_MODELS[0],
    progress: ProgressFn | None = None,
) -> SimilarityResult:
    """Every image against every text: the cosine-similarity matrix of the CLIP paper's figure."""
    if not images:
        raise UserError("Please provide at least one image.")
    if len(images) > LIMITS.max_images:
        raise UserError(f"At most {LIMITS.max_images} images at once (got {len(images)}).")
    pictures = [rgb_image(image, f"image {index + 1}") for index, image in enumerate(images)]
    names = [Path(image).name if isinstance(image, (str, Path)) else f"image {index + 1}"
             for index, image in enumerate(images)]
    text_list = text_items(texts, "text", LIMITS.max_labels)
    (template_text,) = parse_templates([(template or "").strip() or "{}"])
    handle = _clip(model, progress)
    started = time.perf_counter()
    image_embeddings = _image_embeddings(handle, pictures)
    text_embeddings, prompts, warnings = _text_embeddings(handle, text_list, [template_text])
    similarities = image_embeddings @ text_embeddings.T
    probabilities = (_temperature(handle) * similarities).softmax(dim=-1)
    return SimilarityResult(
        image_names=names,
        texts=text_list,
        similarities=similarities.numpy(),
        probabilities=probabilities.numpy(),
        prompts=[group[0] for group in prompts],
        model=model,
        seconds=time.perf_counter() - started,
        warnings=warnings,
    )


SCORES = Task("image + labels → scores", (PICTURE, Field("labels", "Labels (comma separated)", "text",
                                                          "cat, dog, astronaut, rocket")))


def _compare_adapter(model: str):
    def run(image: Any, labels: str, template: str = DEFAULT_TEMPLATE) -> Output:
        result = run_clip_zero_shot(image, labels, template, model)
        return Output(scores=dict(zip(result.labels, result.probabilities)))
    return run


COMPARE_METHODS = [Method(SCORES, model, _compare_adapter(model), {"template": DEFAULT_TEMPLATE})
                   for model in CLIP_MODELS]


# ---- presentation ------------------------------------------------------------------------

def similarity_heatmap(result: SimilarityResult):
    """A matplotlib heat map of cosine similarities, annotated, images as rows."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows, columns = result.similarities.shape
    figure = Figure(figsize=(1.2 + 1.1 * columns, 1.0 + 0.6 * rows), layout="constrained")
    axes = figure.subplots()
    shown = axes.imshow(result.similarities, cmap="viridis", aspect="auto")
    axes.set_xticks(range(columns), result.texts, rotation=30, ha="right")
    axes.set_yticks(range(rows), result.image_names)
    for row in range(rows):
        for column in range(columns):
            axes.text(column, row, f"{result.similarities[row, column]:.2f}", ha="center", va="center",
                      color="white", fontsize=8)
    figure.colorbar(shown, ax=axes, label="cosine similarity")
    axes.set_title(f"{result.model}: image × text similarity")
    return figure


def _summary(model: str, seconds: float, warnings: list[str]) -> str:
    lines = [f"**{model}** · {seconds * 1000:.0f} ms (after loading)"]
    lines += [f"⚠️ {warning}" for warning in warnings]
    return "\n\n".join(lines)


def classify_tab() -> None:
    """One image against typed labels: top-k, all scores, the exact prompts."""
    import gradio as gr
    import pandas as pd

    from demos.shared.handlers import user_errors

    with gr.Tab("Classify one image"):
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="Image", type="pil", image_mode=None,
                                 sources=["upload", "clipboard", "webcam"], height=320)
                labels = gr.Textbox(label="Candidate labels (comma or newline separated)",
                                    value="cat, dog, astronaut, rocket, cup of coffee, camera", lines=2)
                templates = gr.Textbox(label="Prompt templates, one per line ({} = label)",
                                       value=DEFAULT_TEMPLATE, lines=2)
                with gr.Row():
                    ensemble = gr.Button("Use the CLIP paper's 7-template ensemble", size="sm")
                    single = gr.Button("Back to one template", size="sm")
                with gr.Row():
                    model = gr.Dropdown(CLIP_MODELS, value=CLIP_MODELS[0], label="Model")
                    top_k = gr.Slider(1, 10, value=5, step=1, label="Top-k shown")
                classify = gr.Button("Classify", variant="primary")
            with gr.Column():
                top_labels = gr.Label(label="Top labels", num_top_classes=10, elem_id="clip-top")
                chart = gr.BarPlot(x="label", y="probability", label="All labels", y_lim=[0, 1],
                                   sort="-y", height=260)
                info = gr.Markdown()
                prompts = gr.Dataframe(headers=["label", "prompt sent to the text encoder"],
                                       label="Exact prompts", interactive=False, wrap=True,
                                       elem_id="clip-prompts")
        gr.Examples(
            examples=[
                [str(ASSETS / "chelsea.jpg"), "cat, dog, tiger, lion, fox"],
                [str(ASSETS / "astronaut.jpg"), "astronaut, pilot, doctor, chef, firefighter"],
                [str(ASSETS / "coffee.jpg"), "cup of coffee, cup of tea, glass of water, bowl of soup"],
                [str(ASSETS / "rocket.jpg"), "rocket, airplane, lighthouse, chimney"],
                [str(ASSETS / "camera.jpg"), "photographer, painter, musician, soldier"],
            ],
            inputs=[image, labels],
            label="Examples (public-domain images from scikit-image)",
        )

        @user_errors
        def classify_for_ui(image, labels, templates, model, top_k, progress=gr.Progress(track_tqdm=True)):
            result = run_clip_zero_shot(image, labels, templates, model, progress)
            table = pd.DataFrame({"label": result.labels, "probability": result.probabilities})
            prompt_rows = [[label, prompt] for label, group in zip(result.labels, result.prompts) for prompt in group]
            return (dict(result.top(int(top_k))), table,
                    _summary(result.model, result.seconds, result.warnings), prompt_rows)

        gr.on([classify.click, labels.submit], classify_for_ui,
              inputs=[image, labels, templates, model, top_k],
              outputs=[top_labels, chart, info, prompts], api_name="clip_zero_shot")
        ensemble.click(lambda: "\n".join(PAPER_ENSEMBLE), outputs=templates, api_visibility="private")
        single.click(lambda: DEFAULT_TEMPLATE, outputs=templates, api_visibility="private")


def similarity_tab() -> None:
    """Several images against several texts: the similarity heat map."""
    import gradio as gr
    import pandas as pd

    from demos.shared.handlers import user_errors

    with gr.Tab("Many images × many texts"):
        with gr.Row():
            with gr.Column():
                files = gr.File(label="Images", file_count="multiple", file_types=["image"], type="filepath")
                texts = gr.Textbox(label="Texts (one per line)", lines=4,
                                   value="a photo of a cat\na photo of an astronaut\na cup of coffee\na rocket launch")
                template = gr.Textbox(label="Template ({} = text)", value="{}")
                matrix_model = gr.Dropdown(CLIP_MODELS, value=CLIP_MODELS[0], label="Model")
                compare = gr.Button("Compute similarity matrix", variant="primary")
            with gr.Column():
                heatmap = gr.Plot(label="Cosine similarity")
                matrix_info = gr.Markdown()
                # Hidden until a run: empty, it shows gradio's placeholder headers "1 2 3".
                softmax_table = gr.Dataframe(label="Softmax over the texts, per image (rows sum to 1)",
                                             interactive=False, visible=False, elem_id="clip-softmax")
        gr.Examples(
            examples=[[[str(ASSETS / name) for name in ("chelsea.jpg", "astronaut.jpg", "coffee.jpg", "rocket.jpg")]]],
            inputs=[files],
            label="Example set",
        )

        @user_errors
        def similarity_for_ui(files, texts, template, model, progress=gr.Progress(track_tqdm=True)):
            result = run_clip_similarity(files or [], texts, template, model, progress)
            table = pd.DataFrame(np.round(result.probabilities, 3), columns=result.texts)
            table.insert(0, "image", result.image_names)
            return (similarity_heatmap(result), _summary(result.model, result.seconds, result.warnings),
                    gr.Dataframe(value=table, visible=True))

        compare.click(similarity_for_ui, inputs=[files, texts, template, matrix_model],
                      outputs=[heatmap, matrix_info, softmax_table], api_name="clip_similarity")


def build_ui() -> None:
    import gradio as gr

    gr.Markdown(
        "Type candidate labels; CLIP turns each into a sentence with the template, embeds image and "
        "sentences in one space, and ranks the labels by similarity. **The scores are a softmax over the "
        "labels you typed**: they say which of *these* labels fits best, not how sure CLIP is that the "
        "image shows it. Several templates (one per line) are averaged per label — the CLIP paper's "
        "prompt ensembling."
    )
    classify_tab()
    similarity_tab()
