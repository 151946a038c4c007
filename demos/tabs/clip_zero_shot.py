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
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

import models
from demos import ASSETS
from demos.shared.comparison import PICTURE, Field, Method, Output, Task
from demos.shared.inputs import number_in_range, one_of, rgb_image, text_items
from demos.shared.limits import LIMITS
from models import ProgressFn, UserError
from models.pipelines.clip_loss import InfoNCE, symmetric_info_nce

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
    contrastive: InfoNCE | None = None  # CLIP's loss on this batch (both softmaxes; the loss when square)


@dataclass
class CaptionSwap:
    """The same batch before and after one caption is replaced (e.g. by a near-duplicate of another)."""

    caption: int  # 1-based
    before: SimilarityResult
    after: SimilarityResult


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
    temperature = _temperature(handle)
    probabilities = (temperature * similarities).softmax(dim=-1)
    return SimilarityResult(
        image_names=names,
        texts=text_list,
        similarities=similarities.numpy(),
        probabilities=probabilities.numpy(),
        prompts=[group[0] for group in prompts],
        model=model,
        seconds=time.perf_counter() - started,
        warnings=warnings,
        contrastive=symmetric_info_nce(similarities.numpy(), temperature),
    )


def not_square_message(images: int, texts: int) -> str:
    return (f"CLIP's loss needs a square batch: as many texts as images, the i-th text describing the i-th "
            f"image (here {images} images and {texts} texts).")


def run_clip_caption_swap(
    images: Sequence[Any],
    texts: str | Sequence[str],
    caption: Any,
    replacement: str,
    template: str = "{}",
    model: str = CLIP_MODELS[0],
    progress: ProgressFn | None = None,
) -> CaptionSwap:
    """CLIP's loss of a square batch, then of the same batch with caption `caption` (1-based) replaced."""
    text_list = text_items(texts, "text", LIMITS.max_labels)
    if images and len(images) != len(text_list):
        raise UserError(not_square_message(len(images), len(text_list)))
    index = number_in_range(caption, "The caption to replace", 1, len(text_list), whole=True)
    if not (replacement or "").strip():
        raise UserError(f"Type the caption that replaces caption {index}.")
    swapped = text_items([replacement if position == index - 1 else text for position, text in enumerate(text_list)],
                         "text", LIMITS.max_labels)
    before = run_clip_similarity(images, text_list, template, model, progress)
    return CaptionSwap(index, before, run_clip_similarity(images, swapped, template, model, progress))


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
    if result.contrastive is not None and result.contrastive.square:
        from matplotlib.patches import Rectangle

        for index in range(rows):  # the positive pairs of CLIP's loss
            axes.add_patch(Rectangle((index - 0.5, index - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    figure.colorbar(shown, ax=axes, label="cosine similarity")
    axes.set_title(f"{result.model}: image × text similarity")
    return figure


LOSS_FORMULA = (  # rendered by the page's Markdown as mathematics (MATH delimiters)
    "**CLIP's training loss on this batch** (the symmetric InfoNCE of the paper's Figure 3), when the i-th text "
    "describes the i-th image (the outlined diagonal): with $s_{ij}$ the cosine similarity of image $i$ and text "
    "$j$ and the learned temperature $\\tau$ (`model.logit_scale.exp()`, 100 in the released checkpoints),\n\n"
    "$$\\mathcal{L} = \\tfrac12\\Big(\\underbrace{-\\frac1n\\sum_{i=1}^{n}\\log\\frac{e^{\\tau s_{ii}}}"
    "{\\sum_{j} e^{\\tau s_{ij}}}}_{\\text{rows: image}\\,\\to\\,\\text{text}}"
    "\\;\\underbrace{-\\frac1n\\sum_{j=1}^{n}\\log\\frac{e^{\\tau s_{jj}}}{\\sum_{i} e^{\\tau s_{ij}}}}"
    "_{\\text{columns: text}\\,\\to\\,\\text{image}}\\Big)$$\n\n"
    "Every other pair of the batch is a negative: the loss is low only when each image picks its own text among "
    "the n, and each text its own image. A caption that nearly duplicates another one cannot be told apart from it, "
    "whatever the model: try replacing one below."
)


def loss_summary(result: SimilarityResult) -> str:
    """CLIP's loss of the batch in numbers, or why there is none."""
    nce = result.contrastive
    if not nce.square:
        return not_square_message(len(result.image_names), len(result.texts))
    count = len(result.texts)
    return (f"τ = {nce.temperature:.2f} · image→text L_I = {nce.image_loss:.3f} · text→image L_T = "
            f"{nce.text_loss:.3f} · **L = {nce.loss:.3f}** (a model that cannot tell the pairs apart: "
            f"log {count} = {np.log(count):.3f})")


def swap_summary(swap: CaptionSwap) -> str:
    """The loss before and after one caption was replaced, and what its own pair lost."""
    k, before, after = swap.caption, swap.before.contrastive, swap.after.contrastive
    i = k - 1
    lines = [
        f"Caption {k} {swap.before.texts[i]!r} replaced by {swap.after.texts[i]!r}, the batch's loss recomputed:",
        f"The loss went from L = {before.loss:.3f} to **L = {after.loss:.3f}** (image→text {before.image_loss:.3f} → "
        f"{after.image_loss:.3f}, text→image {before.text_loss:.3f} → {after.text_loss:.3f}).",
        f"Pair {k}: P(caption {k} | image {k}) went from {before.image_to_text[i, i]:.3f} to "
        f"{after.image_to_text[i, i]:.3f}, P(image {k} | caption {k}) from {before.text_to_image[i, i]:.3f} to "
        f"{after.text_to_image[i, i]:.3f}.",
    ]
    return "\n\n".join(lines)


def _contrastive_tables(result: SimilarityResult) -> tuple[Any, Any]:
    """The row softmax (image → text) and the column softmax (text → image), images as rows."""
    import pandas as pd

    tables = []
    for probabilities in (result.probabilities, result.contrastive.text_to_image):
        table = pd.DataFrame(np.round(probabilities, 3), columns=result.texts)
        table.insert(0, "image", result.image_names)
        tables.append(table)
    return tables[0], tables[1]


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
    """Several images against several texts: the similarity heat map, and CLIP's loss on the batch."""
    import gradio as gr

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
                column_table = gr.Dataframe(label="Softmax over the images, per text (columns sum to 1)",
                                            interactive=False, visible=False, elem_id="clip-softmax-columns")
        gr.Examples(
            examples=[[[str(ASSETS / name) for name in ("chelsea.jpg", "astronaut.jpg", "coffee.jpg", "rocket.jpg")]]],
            inputs=[files],
            label="Example set",
        )
        loss = _loss_widgets()

        @user_errors
        def similarity_for_ui(files, texts, template, model, progress=gr.Progress(track_tqdm=True)):
            result = run_clip_similarity(files or [], texts, template, model, progress)
            rows, columns = _contrastive_tables(result)
            return (similarity_heatmap(result), _summary(result.model, result.seconds, result.warnings),
                    gr.Dataframe(value=rows, visible=True), gr.Dataframe(value=columns, visible=True),
                    loss_summary(result))

        @user_errors
        def swap_for_ui(files, texts, template, model, caption, replacement, progress=gr.Progress(track_tqdm=True)):
            return swap_summary(run_clip_caption_swap(files or [], texts, caption, replacement, template, model,
                                                      progress))

        compare.click(similarity_for_ui, inputs=[files, texts, template, matrix_model],
                      outputs=[heatmap, matrix_info, softmax_table, column_table, loss.info],
                      api_name="clip_similarity")
        loss.swap.click(swap_for_ui, inputs=[files, texts, template, matrix_model, loss.caption, loss.replacement],
                        outputs=loss.swap_info, api_name="clip_caption_swap")


def _loss_widgets() -> SimpleNamespace:
    """CLIP's loss under the matrix: the formula, its value, and a caption replaced to see it move."""
    import gradio as gr

    from demos.shared.widgets import MATH

    gr.Markdown(LOSS_FORMULA, latex_delimiters=MATH)
    info = gr.Markdown(elem_id="clip-loss")
    with gr.Row():
        caption = gr.Number(value=2, precision=0, minimum=1, label="Replace caption k")
        replacement = gr.Textbox(value="a photo of a cat.", label="… by (e.g. a near-duplicate of another caption)")
        swap = gr.Button("Recompute the loss with caption k replaced")
    swap_info = gr.Markdown(elem_id="clip-swap")
    return SimpleNamespace(info=info, caption=caption, replacement=replacement, swap=swap, swap_info=swap_info)


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
