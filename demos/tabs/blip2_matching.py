"""BLIP-2's training objectives on one image and several captions (Li et al. 2023, "BLIP-2: Bootstrapping
Language-Image Pre-training with Frozen Image Encoders and Large Language Models", stage 1).

The Q-Former's 32 learned queries read the frozen ViT's patch features by cross-attention. Stage 1 trains
them with three objectives that share the Q-Former but not its self-attention mask: image–text
contrastive learning (ITC: queries and text do not see each other; the similarity is the best of the
32 query–text cosines), image–text matching (ITM: queries and text see each other; a 2-way head on the
query outputs says match / no match, trained on hard negatives mined with ITC) and image-grounded text
generation (ITG: a causal mask, text sees all queries). `Salesforce/blip2-itm-vit-g` carries the ITC
projections and the ITM head (not the ITG decoder), so this tab scores every caption both ways.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image

import models
from demos import ASSETS
from demos.shared.inputs import rgb_image, text_items
from models import ProgressFn
from models.blip2_retrieval import BLIP2_ITM

MAX_CAPTIONS = 8  # ITM runs the ViT-g once per caption (the model's forward pairs one image with one text)
EXAMPLES = [
    ("chelsea.jpg", "a photo of a cat\na photo of a dog\na photo of a car\na cat lying on a rug\nan astronaut"),
    ("astronaut.jpg", "a woman in a space suit\na photo of a cat\nan astronaut holding a helmet\na rocket launch"),
    ("coffee.jpg", "a cup of coffee\na cup of tea on a saucer\na glass of orange juice\na bowl of soup"),
]
EXAMPLES_ID = "blip2-match-examples"
TABLE_HEADERS = ["rank (ITM)", "caption", "ITM P(match)", "ITM logits (no, yes)", "ITC similarity",
                 "rank (ITC)", "best query (ITC)"]

OBJECTIVES = r"""
**The Q-Former's 32 learned queries** are 32 vectors trained with BLIP-2; through cross-attention they read the
frozen ViT's 257 patch features (ViT-g/14 at 224 px) and come out as 32 image embeddings $Z = (z_1, \dots, z_{32})$.
One Q-Former, three objectives in stage 1, each with its own **self-attention mask** between queries and text:

* **ITC, image–text contrastive** (*unimodal mask*: queries and text do not see each other). The text's [CLS]
  output $t$ and each query output are projected to 256-d and normalised; the similarity is the best query:
$$s(I, T) = \max_{q = 1..32} \frac{z_q^\top t}{\lVert z_q \rVert\, \lVert t \rVert}$$
  and the batch's matching pairs are pulled together against all other pairs (temperature $\tau$):
$$\mathcal{L}_{\mathrm{ITC}} = -\frac{1}{2}\Big[\log \frac{e^{s(I,T)/\tau}}{\sum_{T'} e^{s(I,T')/\tau}}
  + \log \frac{e^{s(I,T)/\tau}}{\sum_{I'} e^{s(I',T)/\tau}}\Big]$$
* **ITM, image–text matching** (*bidirectional mask*: queries and text see each other). A linear head on each
  query output gives two logits; their mean over the 32 queries, through a softmax, is the match probability:
$$p_{\mathrm{match}}(I, T) = \operatorname{softmax}\Big(\frac{1}{32} \sum_{q=1}^{32} W h_q + b\Big)_{\mathrm{match}},
  \qquad \mathcal{L}_{\mathrm{ITM}} = -\log p_{y}(I, T)$$
  trained on **hard negatives**: for each image, a caption of another image that ITC finds similar.
* **ITG, image-grounded text generation** (*causal mask*: each text token sees all queries and the earlier
  tokens, the queries never see the text): captioning, which forces the queries to carry what the text needs.
  This checkpoint has no ITG decoder; the *Visual QA* tab shows stage 2, the queries fed to a language model.
"""


@dataclass
class MatchingResult:
    picture: Image.Image  # the image as the model's processor received it
    captions: list[str]  # as typed, in input order
    itm_logits: np.ndarray  # (N, 2): (no match, match), the ITM head's mean over the 32 queries
    itm_probability: np.ndarray  # (N,): softmax of the two ITM logits, the match class
    itc_similarity: np.ndarray  # (N,): max over the 32 queries of cos(query embedding, text embedding)
    query_cosines: np.ndarray  # (32, N): every query's cosine with every caption
    ranking: list[int]  # caption indices, best ITM probability first
    parameters: dict[str, Any]

    @property
    def table(self) -> list[list[Any]]:
        """One row per caption, best ITM probability first."""
        itc_order = list(np.argsort(-self.itc_similarity, kind="stable"))
        return [[rank + 1, self.captions[i], round(float(self.itm_probability[i]), 4),
                 f"{self.itm_logits[i, 0]:.3f}, {self.itm_logits[i, 1]:.3f}",
                 round(float(self.itc_similarity[i]), 4), itc_order.index(i) + 1,
                 int(self.query_cosines[:, i].argmax())] for rank, i in enumerate(self.ranking)]


def check_inputs(image: Any, captions: str | list[str] | None) -> tuple[Image.Image, list[str]]:
    """The picture, and the captions one per line (a caption may hold commas), at most MAX_CAPTIONS."""
    picture = rgb_image(image, "an image")
    lines = captions.splitlines() if isinstance(captions, str) else list(captions or [])
    return picture, text_items(lines, "caption", MAX_CAPTIONS)


def match_scores(handle: Any, picture: Image.Image, captions: list[str]) -> dict[str, np.ndarray]:
    """ITM logits (one image–caption pair per row) and ITC similarities with the per-query cosines."""
    import torch

    model = handle.model
    inputs = handle.processor(images=picture, text=captions, return_tensors="pt", padding=True).to(handle.device)
    pixels = inputs["pixel_values"].to(model.dtype)
    text = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    with torch.no_grad():
        itm = model(pixel_values=pixels.expand(len(captions), -1, -1, -1), **text,
                    use_image_text_matching_head=True)
        itc = model(pixel_values=pixels, **text, use_image_text_matching_head=False)
    cosines = itc.image_embeds[0].float() @ itc.text_embeds.float().T  # (32, N), both already normalised
    return dict(itm_logits=itm.logits_per_image.float().cpu().numpy(),
                itc_similarity=itc.logits_per_image[0].float().cpu().numpy(),
                query_cosines=cosines.cpu().numpy())


def run_blip2_matching(image: Any, captions: str | list[str] | None,
                       progress: ProgressFn | None = None) -> MatchingResult:
    """Score every caption against the image with BLIP-2's ITM head and its ITC similarity."""
    picture, captions = check_inputs(image, captions)
    handle = models.get(BLIP2_ITM, progress)
    scores = match_scores(handle, picture, captions)
    logits = scores["itm_logits"]
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    probability = (shifted / shifted.sum(-1, keepdims=True))[:, 1]
    ranking = [int(i) for i in np.argsort(-probability, kind="stable")]
    parameters = dict(model=models.REGISTRY[BLIP2_ITM].checkpoint, captions=len(captions),
                      queries=int(scores["query_cosines"].shape[0]))
    return MatchingResult(picture=picture, captions=captions, itm_logits=logits, itm_probability=probability,
                          itc_similarity=scores["itc_similarity"], query_cosines=scores["query_cosines"],
                          ranking=ranking, parameters=parameters)


def charts(result: MatchingResult) -> tuple[Any, Any]:
    """The two bar charts' tables: ITM probability and ITC similarity per caption."""
    import pandas as pd

    itm = pd.DataFrame({"caption": result.captions, "P(match)": result.itm_probability.round(4)})
    itc = pd.DataFrame({"caption": result.captions, "similarity": result.itc_similarity.round(4)})
    return itm, itc


def layout() -> SimpleNamespace:
    import gradio as gr

    from demos.shared.widgets import MATH

    gr.Markdown("One image, several captions: how well does each match? BLIP-2's Q-Former answers twice, with the "
                "two heads it was pre-trained with. **ITM** reads image and caption together and outputs "
                "P(match); **ITC** compares separately computed embeddings (the best of 32 query–caption "
                "cosines), the fast score used to retrieve candidates.")
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Image", type="pil", height=300, elem_id="blip2-match-image")
            captions = gr.Textbox(label="Captions (one per line)", lines=5, value=EXAMPLES[0][1],
                                  elem_id="blip2-match-captions")
            run = gr.Button("Score the captions", variant="primary", elem_id="blip2-match-run")
        with gr.Column():
            itm_chart = gr.BarPlot(x="caption", y="P(match)", label="ITM: probability of a match", y_lim=[0, 1],
                                   sort="-y", height=240)
            itc_chart = gr.BarPlot(x="caption", y="similarity", label="ITC: best query–caption cosine",
                                   sort="-y", height=240)
    table = gr.Dataframe(headers=TABLE_HEADERS, label="Captions ranked by ITM", interactive=False, wrap=True,
                         elem_id="blip2-match-table")
    gr.Examples([[str(ASSETS / name), text] for name, text in EXAMPLES], inputs=[image, captions],
                label="Examples (public-domain images from scikit-image)", elem_id=EXAMPLES_ID)
    gr.Markdown(OBJECTIVES, latex_delimiters=MATH)
    return SimpleNamespace(image=image, captions=captions, run=run, itm_chart=itm_chart, itc_chart=itc_chart,
                           table=table)


def build_ui() -> None:
    import gradio as gr

    from demos.shared.handlers import user_errors

    w = layout()

    @user_errors
    def run_for_ui(image, captions, progress=gr.Progress(track_tqdm=True)):
        result = run_blip2_matching(image, captions, progress)
        itm, itc = charts(result)
        return itm, itc, result.table

    w.run.click(run_for_ui, inputs=[w.image, w.captions], outputs=[w.itm_chart, w.itc_chart, w.table],
                api_name="blip2_matching")
