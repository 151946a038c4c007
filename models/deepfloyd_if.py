"""DeepFloyd IF, an Imagen-style pixel cascade (Saharia et al., Photorealistic Text-to-Image Diffusion Models with
Deep Language Understanding, NeurIPS 2022): a frozen T5-XXL text encoder, stage I (text → 64² pixels) and stage II
(64² → 256², conditioned on the upscaled stage-I image and its noise level), both UNets attending to the same T5
embeddings. The smallest published stages: `DeepFloyd/IF-I-M-v1.0` (400M) and `DeepFloyd/IF-II-M-v1.0` (450M)
(IF-I-L is 900M, IF-I-XL 4.3B; IF-II-L 1.2B). Both repositories are gated (DeepFloyd IF licence, non-commercial).

Three rows: `if-t5-xxl` is stage I's `text_encoder/` (4.8B parameters, sharded; `fp16` shards on a GPU, bfloat16
on a CPU: 19 GB in fp32) with its tokenizer, `if-i-m` stage I's `IFPipeline` and `if-ii-m` stage II's
`IFSuperResolutionPipeline`, both without a text encoder: the prompt is encoded once and both read it.

The published tokenizer folder holds a SentencePiece `spiece.model` and no `tokenizer.json`; transformers 5 would
need the `sentencepiece` package to read it, which the playground does not install, so the loader reads the
model's pieces with protobuf and builds the same unigram tokenizer (`T5Tokenizer(vocab=...)`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .hub import folder_files, pipeline_files
from .registry import LoadContext, ModelSpec

IF_T5 = "if-t5-xxl"
IF_STAGE_I = "if-i-m"
IF_STAGE_II = "if-ii-m"
T5_MAX_LENGTH = 77  # IF's text encoder was trained on 77 tokens (diffusers' `encode_prompt`)
# scheduler/scheduler_config.json of both stages, and stage II's image_noising_scheduler (the noise added to the
# upscaled stage-I image: its "noise level" is a class label of stage II's UNet).
IF_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", beta_start=0.0001, beta_end=0.02,
                    thresholding=True, dynamic_thresholding_ratio=0.95, sample_max_value=1.0,
                    prediction_type="epsilon", variance_type="learned_range", clip_sample=True)
IF_NOISING_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", beta_start=0.0001,
                            beta_end=0.02, clip_sample=True)
TINY_STAGE_I_SIDE = 16
TINY_T5_WIDTH = 16


# ---- loaders --------------------------------------------------------------------------------------

def load_t5(context: LoadContext) -> Any:
    """The frozen T5-XXL encoder (from its shards; the `fp16` shards on a GPU) in an `IFPipeline` that holds
    only it and the tokenizer, for `encode_prompt` (diffusers' way of encoding IF's prompts apart from the UNets)."""
    from diffusers import IFPipeline
    from transformers import T5EncoderModel

    encoder = T5EncoderModel.from_pretrained(context.source, subfolder="text_encoder", **context.weights())
    encoder.eval().requires_grad_(False)
    tokenizer = t5_tokenizer_from_spiece(context.file("text_encoder/spiece.model"))
    pipe = IFPipeline(tokenizer=tokenizer, text_encoder=encoder, unet=None, scheduler=None, safety_checker=None,
                      feature_extractor=None, watermarker=None, requires_safety_checker=False)
    return pipe.to(context.device)


def t5_tokenizer_from_spiece(path: str) -> Any:
    """The published SentencePiece unigram model as transformers' T5 tokenizer, read with protobuf only."""
    from transformers import T5Tokenizer
    from transformers.convert_slow_tokenizer import import_protobuf

    proto = import_protobuf().ModelProto()
    proto.ParseFromString(Path(path).read_bytes())
    pieces = [(piece.piece, piece.score) for piece in proto.pieces]
    return T5Tokenizer(vocab=pieces, extra_ids=100, model_max_length=T5_MAX_LENGTH)


def _if_pipeline(pipeline_class: Any, context: LoadContext, **components: Any) -> Any:
    from .safety import watch

    off = {} if context.safety_checker else dict(safety_checker=None, requires_safety_checker=False)
    pipe = pipeline_class.from_pretrained(context.source, **context.weights(), **components, **off)
    pipe.set_progress_bar_config(disable=True)
    pipe.unet.eval().requires_grad_(False)
    if pipe.safety_checker is not None:
        watch(pipe.safety_checker)
    return pipe.to(context.device)


def load_stage_i(context: LoadContext) -> Any:
    """`IFPipeline` of stage I's repository without its text encoder: it is given the prompt embeddings of
    `if-t5-xxl` (which may run in another dtype: bfloat16 on a CPU)."""
    from diffusers import IFPipeline

    return _if_pipeline(IFPipeline, context, text_encoder=None, tokenizer=None)


def load_stage_ii(context: LoadContext) -> Any:
    """`IFSuperResolutionPipeline` without a text encoder: it is given stage I's prompt embeddings."""
    from diffusers import IFSuperResolutionPipeline

    return _if_pipeline(IFSuperResolutionPipeline, context, text_encoder=None, tokenizer=None)


# ---- tiny stand-ins in the published layout --------------------------------------------------------

def tiny_spiece_model() -> bytes:
    """A SentencePiece unigram model (serialised protobuf, as `spiece.model`): T5's pad, </s>, unk, then
    letter, digit and punctuation pieces."""
    import string

    from transformers.convert_slow_tokenizer import import_protobuf

    proto = import_protobuf().ModelProto()
    normal, control, unknown = 1, 3, 2
    pieces = [("<pad>", 0.0, control), ("</s>", 0.0, control), ("<unk>", 0.0, unknown), ("▁", -2.0, normal)]
    pieces += [(f"▁{c}", -3.0, normal) for c in string.ascii_letters + string.digits]
    pieces += [(c, -4.0, normal) for c in string.ascii_letters + string.digits + string.punctuation]
    for text, score, kind in pieces:
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = text, score, kind
    proto.trainer_spec.model_type = 1  # unigram
    proto.trainer_spec.unk_id, proto.trainer_spec.pad_id, proto.trainer_spec.eos_id = 2, 0, 1
    proto.trainer_spec.bos_id = -1
    proto.normalizer_spec.add_dummy_prefix = True
    return proto.SerializeToString()


def tiny_t5(vocab_size: int) -> Any:
    import torch
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    return T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=TINY_T5_WIDTH, d_kv=4, d_ff=32, num_layers=1,
                                   num_heads=2, feed_forward_proj="gated-gelu", is_encoder_decoder=False))


def tiny_unet_config(stage: int) -> dict:
    """IF's UNet (ResNet down/up blocks, simple cross-attention blocks, T5 embeddings projected by
    `encoder_hid_dim`, attention-pooled text added to the time embedding) at toy width. Stage I predicts noise
    and variance (6 channels) from 3; stage II reads the noisy 4× image and the upscaled stage-I image (6
    channels) and the noise level of the latter as a class embedding."""
    config = dict(
        sample_size=TINY_STAGE_I_SIDE, in_channels=3, out_channels=6, layers_per_block=1,
        block_out_channels=(16, 32), down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", cross_attention_dim=32, attention_head_dim=8,
        encoder_hid_dim=TINY_T5_WIDTH, encoder_hid_dim_type="text_proj", addition_embed_type="text",
        addition_embed_type_num_heads=2, cross_attention_norm="group_norm", resnet_time_scale_shift="scale_shift",
        act_fn="gelu", norm_num_groups=8,
    )
    if stage == 2:
        config |= dict(sample_size=4 * TINY_STAGE_I_SIDE, in_channels=6, class_embed_type="timestep",
                       mid_block_scale_factor=1.414, time_embedding_act_fn="gelu", time_embedding_dim=32,
                       resnet_skip_time_act=True, resnet_out_scale_factor=1 / 0.7071)
    return config


def _tiny_if_parts(folder: Path) -> dict:
    """The parts both repositories publish besides their UNet and schedulers: the tokenizer (`spiece.model`,
    also beside the text encoder), the T5 text encoder, the watermarker, the CLIP image processor and
    IF's safety checker (a CLIP vision tower with two heads)."""
    from diffusers.pipelines.deepfloyd_if.safety_checker import IFSafetyChecker
    from diffusers.pipelines.deepfloyd_if.watermark import IFWatermarker
    from transformers import CLIPConfig

    from .clip import IMAGE_SIZE, image_processor

    spiece = tiny_spiece_model()
    for sub in ("tokenizer", "text_encoder"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / sub / "spiece.model").write_bytes(spiece)
    tokenizer = t5_tokenizer_from_spiece(str(folder / "tokenizer" / "spiece.model"))
    tokenizer.save_pretrained(folder / "text_encoder")
    config = CLIPConfig(text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2),
                        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=IMAGE_SIZE, patch_size=32,
                                           projection_dim=8), projection_dim=8)
    return dict(tokenizer=tokenizer, text_encoder=tiny_t5(len(tokenizer)), watermarker=IFWatermarker(),
                feature_extractor=image_processor(), safety_checker=IFSafetyChecker(config))


def build_tiny_stage_i(folder: Path) -> None:
    import torch
    from diffusers import DDPMScheduler, IFPipeline, UNet2DConditionModel

    parts = _tiny_if_parts(folder)
    torch.manual_seed(1)
    IFPipeline(unet=UNet2DConditionModel(**tiny_unet_config(1)), scheduler=DDPMScheduler(**IF_SCHEDULER),
               requires_safety_checker=False, **parts).save_pretrained(folder, safe_serialization=True)


def build_tiny_stage_ii(folder: Path) -> None:
    import torch
    from diffusers import DDPMScheduler, IFSuperResolutionPipeline, UNet2DConditionModel

    parts = _tiny_if_parts(folder)
    torch.manual_seed(2)
    IFSuperResolutionPipeline(unet=UNet2DConditionModel(**tiny_unet_config(2)),
                              scheduler=DDPMScheduler(**IF_SCHEDULER),
                              image_noising_scheduler=DDPMScheduler(**IF_NOISING_SCHEDULER),
                              requires_safety_checker=False, **parts).save_pretrained(folder, safe_serialization=True)


SPECS = [
    ModelSpec(
        name=IF_T5,
        checkpoint="DeepFloyd/IF-I-M-v1.0",
        loader=load_t5,
        tiny_builder=build_tiny_stage_i,
        files=folder_files("text_encoder"),
        cpu_dtype="bfloat16",
        description="DeepFloyd IF's frozen T5-XXL text encoder (4.8B, sharded; fp16 shards on a GPU, bfloat16 on "
                    "a CPU): 77 tokens → 77×4096 embeddings for both stages",
    ),
    ModelSpec(
        name=IF_STAGE_I,
        checkpoint="DeepFloyd/IF-I-M-v1.0",
        loader=load_stage_i,
        tiny_builder=build_tiny_stage_i,
        files=pipeline_files("text_encoder", "tokenizer"),
        description="DeepFloyd IF stage I, M (UNet 400M): T5 embeddings → 64×64 pixels",
    ),
    ModelSpec(
        name=IF_STAGE_II,
        checkpoint="DeepFloyd/IF-II-M-v1.0",
        loader=load_stage_ii,
        tiny_builder=build_tiny_stage_ii,
        files=pipeline_files("text_encoder", "tokenizer"),
        description="DeepFloyd IF stage II, M (UNet 450M): 64×64 → 256×256, reads stage I's T5 embeddings",
    ),
]
