"""CLIP's training objective on one batch (Radford et al. 2021, Figure 3): the symmetric InfoNCE.

n images and n texts, the i-th text belonging to the i-th image; every other pair of the batch is a
negative. With s the [images, texts] cosine similarities and τ = exp(logit_scale) the learned
temperature (100 for the released checkpoints):

    logits = τ·s
    image → text: each row softmaxed over the texts,   L_I = −(1/n) Σ_i log softmax_row(logits)[i, i]
    text → image: each column softmaxed over the images, L_T = −(1/n) Σ_j log softmax_col(logits)[j, j]
    L = ½ (L_I + L_T)

transformers computes L inside `CLIPModel(..., return_loss=True)` from its own embeddings; here it is
computed from any similarity matrix (the tab's, which may average prompt templates) and keeps the two
softmaxes and the two directions apart so they can be shown.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class InfoNCE:
    """Both softmaxes of τ·s, for any shape; the losses only for a square matrix (else None)."""

    temperature: float
    logits: np.ndarray  # [images, texts] τ·s
    image_to_text: np.ndarray  # softmax of each row, over the texts: rows sum to 1
    text_to_image: np.ndarray  # softmax of each column, over the images: columns sum to 1
    image_loss: float | None = None  # L_I: cross-entropy of the rows with the diagonal as targets
    text_loss: float | None = None  # L_T: cross-entropy of the columns with the diagonal as targets
    loss: float | None = None  # ½ (L_I + L_T)

    @property
    def square(self) -> bool:
        return self.loss is not None


def symmetric_info_nce(similarities: Any, temperature: float) -> InfoNCE:
    """CLIP's loss of the batch whose [images, texts] cosine similarities are `similarities`, at the
    temperature τ (multiplied in, as `logit_scale.exp()`), with the softmaxes of both directions."""
    scores = torch.as_tensor(np.asarray(similarities), dtype=torch.float64)
    if scores.ndim != 2 or 0 in scores.shape:
        raise ValueError(f"Expected a non-empty [images, texts] matrix, got shape {tuple(scores.shape)}.")
    logits = float(temperature) * scores
    rows, columns = logits.log_softmax(dim=1), logits.log_softmax(dim=0)
    result = InfoNCE(float(temperature), logits.numpy(), rows.exp().numpy(), columns.exp().numpy())
    if scores.shape[0] == scores.shape[1]:
        diagonal = torch.arange(scores.shape[0])
        result.image_loss = float(-rows[diagonal, diagonal].mean())
        result.text_loss = float(-columns[diagonal, diagonal].mean())
        result.loss = (result.image_loss + result.text_loss) / 2
    return result
