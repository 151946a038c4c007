"""Visual question answering: BLIP-2 (Li et al. 2023), InstructBLIP (Dai et al. 2023) and LLaVA (Liu
et al. 2023) checkpoints.

All are image-to-text generators that put image features into a language model, but differently:
BLIP-2 squeezes a frozen ViT's patch features through a Q-Former into `num_query_tokens` (32) soft
tokens; InstructBLIP does the same with a Q-Former that also reads the instruction (it stands in for
MiniGPT-4, which feeds BLIP-2's Q-Former into Vicuna through one linear layer but has no transformers
class); LLaVA projects every vision patch (576 for LLaVA-1.5) straight into the LLM with an MLP.

The tiny stand-ins keep each checkpoint's classes, image size, patch size, feature-selection
strategy and number of image tokens, so prompts, processors and token counts are the real ones;
only the widths, depths and vocabularies are toy-sized.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .hub import folder_files
from .registry import LoadContext, ModelSpec

if TYPE_CHECKING:
    import torch

IMAGE_TOKEN = "<image>"
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
# The chat templates the published LLaVA processors ship (chat_template.json of each repo).
LLAVA_15_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != "
    "'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
LLAVA_INTERLEAVE_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}"
    "{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in "
    "message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ '\n' + content['text'] }}{% endgeneration %}{% endfor %}{% endif %}"
    "{{'<|im_end|>'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class VqaHandle:
    family: str  # "blip2", "instructblip" or "llava"
    model: Any  # Blip2ForConditionalGeneration | InstructBlipForConditionalGeneration | LlavaForConditionalGeneration
    processor: Any  # Blip2Processor | InstructBlipProcessor | LlavaProcessor
    device: "torch.device"

    @property
    def image_token_id(self) -> int:
        return self.model.config.image_token_id


# ---- 8-bit / 4-bit loading --------------------------------------------------------------------

def available_quantizations() -> list[str]:
    """["8-bit", "4-bit"] where bitsandbytes can run (CUDA and the package present), else []."""
    import torch

    if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
        return []
    return ["8-bit", "4-bit"]


def _quantization_config(quantization: str | None) -> Any:
    if quantization is None:
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "8-bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    import torch

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float16, bnb_4bit_quant_type="nf4")


def _load(model_class: str, family: str, context: LoadContext, quantization: str | None = None) -> VqaHandle:
    """One loader for both families and both profiles; quantized weights are placed by accelerate."""
    import transformers

    quantization_config = _quantization_config(quantization)
    placement = {"device_map": {"": str(context.device)}} if quantization_config is not None else {}
    model = getattr(transformers, model_class).from_pretrained(
        context.source, **context.weights(), quantization_config=quantization_config, **placement)
    if quantization_config is None:
        model = model.to(context.device)
    processor = getattr(transformers, PROCESSORS[family]).from_pretrained(context.source, **context.hub())
    if family == "instructblip":
        # transformers 5.23's AutoTokenizer wants a config.json in `qformer_tokenizer/`, which the repository
        # does not have, and then falls back to the LLM's tokenizer (Llama ids into the Q-Former's BERT
        # embedding: an IndexError). Named by its class, the Q-Former's own tokenizer loads.
        processor.qformer_tokenizer = transformers.BertTokenizer.from_pretrained(
            context.source, subfolder="qformer_tokenizer", **context.hub())
    return VqaHandle(family, model.eval(), processor, context.device)


# The processor class is named, not read from processor_config.json: InstructBLIP's published file names
# the video processor (InstructBlipVideoProcessor), which AutoProcessor would pick for still images.
PROCESSORS = {"blip2": "Blip2Processor", "instructblip": "InstructBlipProcessor", "llava": "LlavaProcessor"}
load_blip2 = partial(_load, "Blip2ForConditionalGeneration", "blip2")
load_instructblip = partial(_load, "InstructBlipForConditionalGeneration", "instructblip")
load_llava = partial(_load, "LlavaForConditionalGeneration", "llava")


# ---- tiny tokenizers, built offline in each checkpoint's tokenizer class -------------------------

# Whole-word tokens (with the tokenizer's leading-space marker) so that the random tiny models emit
# word salad that streams word by word, rather than only single bytes. No merges: encoding a text
# still goes character by character.
TINY_WORDS = ("a an the this is of in on with and it there cat dog man woman cup coffee rocket camera sky "
              "red blue white black small large photo picture holding wearing sitting standing flying").split()


def _byte_level_vocab(specials: list[str]) -> dict[str, int]:
    from tokenizers.pre_tokenizers import ByteLevel

    tokens = specials + sorted(ByteLevel.alphabet()) + [f"Ġ{word}" for word in TINY_WORDS]
    return {token: index for index, token in enumerate(tokens)}


def tiny_opt_tokenizer():
    """OPT's GPT-2 byte-level BPE (no merges: one token per byte), BOS `</s>` prepended as in OPT."""
    from transformers import GPT2Tokenizer

    vocab = _byte_level_vocab(["<s>", "<pad>", "</s>", "<unk>"])
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=[], bos_token="</s>", eos_token="</s>", unk_token="</s>",
                              pad_token="<pad>", add_bos_token=True)
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)  # as in the published repo's added_tokens
    return tokenizer


def tiny_t5_tokenizer():
    """Flan-T5's SentencePiece unigram: pad, </s>, unk, then lowercase/uppercase words pieces."""
    import string

    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(f"▁{c}", -3.0) for c in string.ascii_letters + string.digits]
    pieces += [(c, -4.0) for c in string.ascii_letters + string.digits + string.punctuation]
    pieces += [(f"▁{word}", -5.0) for word in TINY_WORDS if len(word) > 1]
    pieces += [(f"<extra_id_{i}>", 0.0) for i in range(99, -1, -1)]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=100)
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    return tokenizer


def tiny_llama_tokenizer():
    """Llama's SentencePiece BPE with byte fallback: unk, <s>, </s>, the 256 byte tokens, ASCII pieces."""
    import string

    from transformers import LlamaTokenizer

    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["▁"]
    tokens += [f"▁{c}" for c in string.ascii_letters] + list(string.ascii_letters + string.digits + string.punctuation)
    tokens += [f"▁{word}" for word in TINY_WORDS if len(word) > 1]
    tokenizer = LlamaTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], add_bos_token=True,
                               pad_token="<unk>")
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    return tokenizer


def tiny_bert_tokenizer():
    """The Q-Former's BERT WordPiece (bert-base-uncased in the published repos): letters, digits and
    punctuation, with `##` continuations, so an instruction is tokenised character by character."""
    import string

    from transformers import BertTokenizer

    characters = string.ascii_lowercase + string.digits
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(characters + string.punctuation)
    tokens += [f"##{c}" for c in characters] + [word for word in TINY_WORDS if len(word) > 1]
    return BertTokenizer(vocab={token: index for index, token in enumerate(tokens)})


def tiny_qwen2_tokenizer():
    """Qwen2's byte-level BPE (no merges) with its chat special tokens and `<image>`."""
    from transformers import Qwen2Tokenizer

    tokenizer = Qwen2Tokenizer(vocab=_byte_level_vocab(["<|endoftext|>"]), merges=[], eos_token="<|im_end|>",
                               pad_token="<|endoftext|>", unk_token=None)
    tokenizer.add_tokens(["<|im_start|>", "<|im_end|>", IMAGE_TOKEN], special_tokens=True)
    return tokenizer


# ---- tiny builders ------------------------------------------------------------------------------

def save_processor_in_published_layout(processor, folder: Path) -> None:
    """Save as the published repos are laid out (written by transformers 4.x): the image processor in
    `preprocessor_config.json`, the processor's own settings in `processor_config.json`, the chat
    template in `chat_template.json`, so the tiny profile loads through the hub's file layout."""
    import json

    processor.save_pretrained(folder)
    settings_path = folder / "processor_config.json"
    settings = json.loads(settings_path.read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps(settings.pop("image_processor"), indent=2))
    settings_path.write_text(json.dumps(settings, indent=2))
    template = folder / "chat_template.jinja"
    if template.exists():
        (folder / "chat_template.json").write_text(json.dumps({"chat_template": template.read_text()}))
        template.unlink()


def _tiny_layers(hidden: int = 32) -> dict:
    return dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=2)


def _build_tiny_blip2(folder: Path, tokenizer, text_config: Callable[[Any], dict]) -> None:
    """BLIP-2 at toy width with the published 224 px / 14 px patches and 32 Q-Former queries."""
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor

    vision = dict(_tiny_layers(), image_size=224, patch_size=14)
    qformer = dict(_tiny_layers(), encoder_hidden_size=32, cross_attention_frequency=2, vocab_size=64)
    config = Blip2Config(vision_config=vision, qformer_config=qformer, text_config=text_config(tokenizer),
                         num_query_tokens=32, image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    torch.manual_seed(0)
    Blip2ForConditionalGeneration(config).save_pretrained(folder)
    image_processor = BlipImageProcessor(size={"height": 224, "width": 224}, image_mean=CLIP_MEAN,
                                         image_std=CLIP_STD, do_convert_rgb=True)
    save_processor_in_published_layout(Blip2Processor(image_processor, tokenizer, num_query_tokens=32), folder)


def build_tiny_instructblip_vicuna(folder: Path) -> None:
    """InstructBLIP at toy width: BLIP-2's 224 px / 14 px ViT and 32 queries, a Q-Former with a word
    embedding (it reads the instruction, tokenised by its own BERT tokenizer saved in
    `qformer_tokenizer/` as in the published repo) and a Llama (Vicuna) LLM."""
    import torch
    from transformers import (BlipImageProcessor, InstructBlipConfig, InstructBlipForConditionalGeneration,
                              InstructBlipProcessor)

    tokenizer, qformer_tokenizer = tiny_llama_tokenizer(), tiny_bert_tokenizer()
    vision = dict(_tiny_layers(), image_size=224, patch_size=14)
    qformer = dict(_tiny_layers(), encoder_hidden_size=32, cross_attention_frequency=2,
                   vocab_size=len(qformer_tokenizer), pad_token_id=qformer_tokenizer.pad_token_id)
    text = dict(_tiny_layers(), model_type="llama", vocab_size=len(tokenizer), max_position_embeddings=2048,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    config = InstructBlipConfig(vision_config=vision, qformer_config=qformer, text_config=text, num_query_tokens=32,
                                image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    torch.manual_seed(0)
    InstructBlipForConditionalGeneration(config).save_pretrained(folder)
    image_processor = BlipImageProcessor(size={"height": 224, "width": 224}, image_mean=CLIP_MEAN,
                                         image_std=CLIP_STD, do_convert_rgb=True)
    processor = InstructBlipProcessor(image_processor, tokenizer, qformer_tokenizer, num_query_tokens=32)
    save_processor_in_published_layout(processor, folder)


def _opt_config(tokenizer) -> dict:
    return dict(model_type="opt", vocab_size=len(tokenizer), hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                num_attention_heads=2, word_embed_proj_dim=32, max_position_embeddings=512,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)


def _t5_config(tokenizer) -> dict:
    return dict(model_type="t5", vocab_size=len(tokenizer), d_model=32, d_ff=64, d_kv=16, num_layers=2,
                num_decoder_layers=2, num_heads=2, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                decoder_start_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)


def build_tiny_blip2_opt(folder: Path) -> None:
    _build_tiny_blip2(folder, tiny_opt_tokenizer(), _opt_config)


def build_tiny_blip2_t5(folder: Path) -> None:
    _build_tiny_blip2(folder, tiny_t5_tokenizer(), _t5_config)


def _build_tiny_llava(folder: Path, tokenizer, vision: dict, text: dict, image_processor, chat_template: str,
                      select_strategy: str, feature_layer: int, additional_image_tokens: int) -> None:
    """LLaVA at toy width; processor and config agree on patch size, feature selection and CLS count."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    text = dict(_tiny_layers(), vocab_size=len(tokenizer), max_position_embeddings=2048, initializer_range=0.5,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, **text)
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    config = LlavaConfig(vision_config=dict(_tiny_layers(), **vision), text_config=text,
                         image_token_index=image_token_id, vision_feature_select_strategy=select_strategy,
                         vision_feature_layer=feature_layer,
                         image_seq_length=(vision["image_size"] // vision["patch_size"]) ** 2)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder)
    processor = LlavaProcessor(image_processor, tokenizer, patch_size=vision["patch_size"],
                               vision_feature_select_strategy=select_strategy, chat_template=chat_template,
                               num_additional_image_tokens=additional_image_tokens)
    save_processor_in_published_layout(processor, folder)


def build_tiny_llava_15(folder: Path) -> None:
    """CLIP ViT-L/14 at 336 px (CLS dropped: 576 tokens) into a Llama."""
    from transformers import CLIPImageProcessor

    image_processor = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                         image_mean=CLIP_MEAN, image_std=CLIP_STD)
    _build_tiny_llava(folder, tiny_llama_tokenizer(), dict(model_type="clip_vision_model", image_size=336,
                                                           patch_size=14, projection_dim=32),
                      dict(model_type="llama"), image_processor, LLAVA_15_CHAT_TEMPLATE,
                      select_strategy="default", feature_layer=-2, additional_image_tokens=1)


def build_tiny_llava_interleave(folder: Path) -> None:
    """SigLIP at 384 px (no CLS, all 729 patches) into a Qwen2."""
    from transformers import SiglipImageProcessor

    image_processor = SiglipImageProcessor(size={"height": 384, "width": 384}, image_mean=[0.5] * 3,
                                           image_std=[0.5] * 3, resample=3)
    _build_tiny_llava(folder, tiny_qwen2_tokenizer(), dict(model_type="siglip_vision_model", image_size=384,
                                                           patch_size=14),
                      dict(model_type="qwen2", num_key_value_heads=2, tie_word_embeddings=True),
                      image_processor, LLAVA_INTERLEAVE_CHAT_TEMPLATE,
                      select_strategy="full", feature_layer=-1, additional_image_tokens=0)


# ---- registry rows ------------------------------------------------------------------------------

SMALLEST = "llava-interleave-qwen-0.5b"
_CHECKPOINTS = [
    # name, checkpoint, loader, tiny builder, description; the 3-8B models run in bfloat16 on a CPU (half
    # of fp32's memory: BLIP-2 7.5 GB instead of 15), the 0.5B one in fp32
    ("blip2-opt-2.7b", "Salesforce/blip2-opt-2.7b", load_blip2, build_tiny_blip2_opt,
     "BLIP-2: ViT-g + Q-Former (32 queries) + OPT-2.7B, 3.7B parameters"),
    ("blip2-flan-t5-xl", "Salesforce/blip2-flan-t5-xl", load_blip2, build_tiny_blip2_t5,
     "BLIP-2: ViT-g + Q-Former (32 queries) + Flan-T5-XL encoder-decoder, 3.9B parameters"),
    ("instructblip-vicuna-7b", "Salesforce/instructblip-vicuna-7b", load_instructblip,
     build_tiny_instructblip_vicuna, "InstructBLIP: ViT-g + instruction-aware Q-Former (32 queries) + Vicuna-7B, "
     "7.9B parameters"),
    ("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf", load_llava, build_tiny_llava_15,
     "LLaVA-1.5: CLIP ViT-L/14-336 + MLP projector + Vicuna-7B, 7.1B parameters"),
    (SMALLEST, "llava-hf/llava-interleave-qwen-0.5b-hf", load_llava,
     build_tiny_llava_interleave, "LLaVA-Interleave: SigLIP-400M + MLP projector + Qwen1.5-0.5B, 0.9B parameters"),
]


def quantized_name(name: str, quantization: str | None) -> str:
    """The registry row of `name` loaded with bitsandbytes (`blip2-opt-2.7b-8bit`), or `name` itself."""
    return name if quantization is None else f"{name}-{quantization.replace('-', '')}"


SPECS = [
    ModelSpec(
        name=quantized_name(name, quantization),
        checkpoint=checkpoint,
        loader=partial(loader, quantization=quantization) if quantization else loader,
        tiny_builder=builder,
        description=description + (f", {quantization} weights (bitsandbytes)" if quantization else ""),
        files=folder_files("", "qformer_tokenizer") if name.startswith("instructblip") else folder_files(),
        cpu_dtype=None if name == SMALLEST else "bfloat16",
        smaller=None if name == SMALLEST else SMALLEST,
    )
    for quantization in [None, *available_quantizations()]
    for name, checkpoint, loader, builder, description in _CHECKPOINTS
]
