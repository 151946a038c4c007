"""BLIP-2's first-stage objectives (Li et al. 2023): the Q-Former's image–text matching head (ITM) and its
image–text contrastive embeddings (ITC), as `Blip2ForImageTextRetrieval` of `Salesforce/blip2-itm-vit-g`.

The checkpoint is the stage-1 model of the paper: EVA ViT-g/14 (224 px, 14 px patches), a Q-Former with 32
learned queries and BERT-base's word embeddings, a 256-d projection of queries and text for ITC and a
2-way ITM head; no language model. `forward(..., use_image_text_matching_head=True)` returns the ITM
logits (not match, match) averaged over the 32 query outputs; `False` returns the ITC similarity, the
largest cosine between the text's [CLS] embedding and the 32 query embeddings.

As published at the pinned commit (models/published/Salesforce--blip2-itm-vit-g.json) the config has no
`image_token_index` and there is no `processor_config.json`, so the processor adds no `<image>` tokens and
the model reads the text ids as they are. The tiny stand-in keeps that, the classes, the 224 px / 14 px
patches, the 32 queries and the BERT WordPiece files (vocab.txt, no tokenizer.json), at toy width.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .registry import LoadContext, ModelSpec

if TYPE_CHECKING:
    import torch

BLIP2_ITM = "blip2-itm-vit-g"
NUM_QUERY_TOKENS = 32
DECODER_BOS = "[DEC]"  # LAVIS adds it to bert-base-uncased (id 30522: the Q-Former's 30523 words)


@dataclass
class RetrievalHandle:
    model: Any  # Blip2ForImageTextRetrieval
    processor: Any  # Blip2Processor: BlipImageProcessor + BertTokenizer
    device: "torch.device"


def load_blip2_retrieval(context: LoadContext) -> RetrievalHandle:
    from transformers import Blip2ForImageTextRetrieval, Blip2Processor

    model = Blip2ForImageTextRetrieval.from_pretrained(context.source, **context.weights())
    processor = Blip2Processor.from_pretrained(context.source, **context.hub())
    return RetrievalHandle(model.to(context.device).eval(), processor, context.device)


def tiny_qformer_tokenizer():
    """bert-base-uncased's WordPiece at toy size (letters, digits, a few words) with LAVIS's [DEC] token."""
    from .vqa import tiny_bert_tokenizer

    tokenizer = tiny_bert_tokenizer()
    tokenizer.add_special_tokens({"bos_token": DECODER_BOS})
    return tokenizer


def build_tiny_blip2_retrieval(folder: Path) -> None:
    """The published classes at toy width: ViT at 224 px / 14 px, a Q-Former with 32 queries reading
    its own word embeddings, ITC projections and the ITM head; no `image_token_index` (as published)."""
    import torch
    from transformers import Blip2Config, Blip2ForImageTextRetrieval, Blip2Processor, BlipImageProcessor

    from .vqa import CLIP_MEAN, CLIP_STD

    tokenizer = tiny_qformer_tokenizer()
    layers = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    vision = dict(layers, image_size=224, patch_size=14)
    qformer = dict(layers, encoder_hidden_size=32, cross_attention_frequency=1, vocab_size=len(tokenizer),
                   pad_token_id=tokenizer.pad_token_id, use_qformer_text_input=True)
    config = Blip2Config(vision_config=vision, qformer_config=qformer, num_query_tokens=NUM_QUERY_TOKENS,
                         image_text_hidden_size=16)
    torch.manual_seed(0)
    model = Blip2ForImageTextRetrieval(config)
    with torch.no_grad():  # transformers starts the queries at zero; trained ones differ from each other
        model.query_tokens.normal_(std=0.5)
    model.save_pretrained(folder)
    image_processor = BlipImageProcessor(size={"height": 224, "width": 224}, image_mean=CLIP_MEAN,
                                         image_std=CLIP_STD, do_convert_rgb=True)
    Blip2Processor(image_processor, tokenizer).save_pretrained(folder)
    image_processor.save_pretrained(folder)  # preprocessor_config.json, as the repository has it


SPECS = [
    ModelSpec(name=BLIP2_ITM, checkpoint="Salesforce/blip2-itm-vit-g",
              loader=load_blip2_retrieval, tiny_builder=build_tiny_blip2_retrieval,
              description="BLIP-2 stage 1: ViT-g + Q-Former with ITM head and ITC projections (1.2B parameters, "
                          "4.7 GB in fp32, no language model)"),
]
