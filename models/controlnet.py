"""ControlNet v1.1 and T2I-Adapter on the shared Stable Diffusion 1.5 base, and the annotators that
turn a photo into their control maps.

Every ControlNet / T2I-Adapter spec loads only its own weights; its loader derives a pipeline from
the one `sd15` handle with `from_pipe(..., dtype=base.dtype)`, so the UNet, VAE and text encoder are
held once however many conditions are used. Annotators (HED, line art, OpenPose, NormalBAE, depth,
segmentation) are shared handles too, loaded on first use.
"""
from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .registry import LoadContext, ModelSpec
from .hub import named_files
from .stable_diffusion import SD15, tiny_unet_config

ANNOTATORS_REPO = "lllyasviel/Annotators"


@dataclass(frozen=True)
class Condition:
    """One kind of control map: its ControlNet, how the map is extracted, and the comparable adapter."""

    name: str
    label: str
    controlnet: str  # spec name of the derived ControlNet pipeline
    annotator: str | None  # spec name of the preprocessor handle; None for canny (no weights)
    adapter: str | None  # spec name of the T2I-Adapter pipeline for the same kind of map, if one exists


CONDITIONS: dict[str, Condition] = {c.name: c for c in [
    Condition("canny", "Canny edges", "controlnet-canny", None, "controlnet-t2iadapter-sketch"),
    Condition("depth", "Depth", "controlnet-depth", "controlnet-annotator-depth", "controlnet-t2iadapter-depth"),
    Condition("openpose", "OpenPose skeleton", "controlnet-openpose", "controlnet-annotator-openpose",
              "controlnet-t2iadapter-openpose"),
    Condition("softedge", "Soft edges (HED)", "controlnet-softedge", "controlnet-annotator-hed",
              "controlnet-t2iadapter-sketch"),
    Condition("scribble", "Scribble (HED, thresholded)", "controlnet-scribble", "controlnet-annotator-hed",
              "controlnet-t2iadapter-sketch"),
    Condition("lineart", "Line art", "controlnet-lineart", "controlnet-annotator-lineart",
              "controlnet-t2iadapter-sketch"),
    Condition("seg", "Segmentation (ADE20K colours)", "controlnet-seg", "controlnet-annotator-seg",
              "controlnet-t2iadapter-seg"),
    Condition("normal", "Surface normals (NormalBAE)", "controlnet-normal", "controlnet-annotator-normalbae", None),
]}


def parameter_count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


# ---- ControlNet ------------------------------------------------------------------------------

def load_controlnet_pipeline(context: LoadContext) -> Any:
    """This condition's ControlNet on the shared SD-1.5 base (no copy of UNet, VAE or text encoder)."""
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    base = context.get(SD15)
    controlnet = ControlNetModel.from_pretrained(context.source, **context.weights()).to(context.device)
    pipe = StableDiffusionControlNetPipeline.from_pipe(base, controlnet=controlnet, dtype=base.dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_controlnet(folder: Path) -> None:
    """A tiny ControlNet copied from a tiny SD-1.5 UNet, as the paper initialises it; its zero
    convolutions get small random weights so that, like a trained ControlNet, it changes the output."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**tiny_unet_config())
    # One entry per conditioning-embedding block: 3 stride-2 steps = the VAE's factor 8.
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8, 8, 16))
    zero_convolutions = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                         controlnet.controlnet_cond_embedding.conv_out]
    for conv in zero_convolutions:
        torch.nn.init.normal_(conv.weight, std=0.2)
    controlnet.save_pretrained(folder, safe_serialization=True)


# ---- T2I-Adapter -----------------------------------------------------------------------------

def load_adapter_pipeline(context: LoadContext) -> Any:
    """A T2I-Adapter on the shared SD-1.5 base: the adapter runs once, its features are added to the
    UNet encoder at every step."""
    from diffusers import StableDiffusionAdapterPipeline, T2IAdapter

    base = context.get(SD15)
    adapter = T2IAdapter.from_pretrained(context.source, **context.weights()).to(context.device)
    pipe = StableDiffusionAdapterPipeline.from_pipe(base, adapter=adapter, dtype=base.dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_adapter(folder: Path, in_channels: int) -> None:
    import torch
    from diffusers import T2IAdapter

    torch.manual_seed(0)
    channels = tiny_unet_config()["block_out_channels"]
    T2IAdapter(in_channels=in_channels, channels=list(channels), num_res_blocks=1, downscale_factor=8,
               adapter_type="full_adapter").save_pretrained(folder, safe_serialization=True)


# ---- annotators from lllyasviel/Annotators (controlnet_aux) ------------------------------------

@dataclass(frozen=True)
class Annotator:
    """A controlnet_aux detector: its class, and its networks as the published `.pth` files hold them."""

    detector: str  # class name in controlnet_aux
    state_dicts: Callable[[], dict[str, Any]]  # published file name -> object torch.load returns
    files: tuple[str, ...]  # the published files its `from_pretrained` reads


def load_annotator(context: LoadContext, annotator: Annotator) -> Any:
    """controlnet_aux's own `from_pretrained`, given the cached snapshot folder of the pinned commit. The
    published files are pickles; torch >= 2.6 reads them with `weights_only=True`, so no code is executed."""
    import controlnet_aux

    snapshot = Path(context.file(next(iter(context.download.files)))).parent
    detector = getattr(controlnet_aux, annotator.detector).from_pretrained(str(snapshot))
    return detector.to(context.device)


def build_tiny_annotator(folder: Path, annotator: Annotator) -> None:
    """The library's networks, randomly initialised, saved (in fp16, to keep them small) under the
    published file names and key layouts."""
    import torch

    torch.manual_seed(0)
    for filename, state in annotator.state_dicts().items():
        torch.save(_half(state), folder / filename)


def _half(state: Any) -> Any:
    import torch

    if isinstance(state, dict):
        return {key: _half(value) for key, value in state.items()}
    return state.half() if isinstance(state, torch.Tensor) and state.is_floating_point() else state


def _hed() -> dict[str, Any]:
    from controlnet_aux.hed import ControlNetHED_Apache2

    return {"ControlNetHED.pth": ControlNetHED_Apache2().state_dict()}


def _lineart() -> dict[str, Any]:
    from controlnet_aux.lineart import Generator

    return {name: Generator(3, 1, 3).state_dict() for name in ("sk_model.pth", "sk_model2.pth")}


def _openpose() -> dict[str, Any]:
    from controlnet_aux.open_pose.face import FaceNet
    from controlnet_aux.open_pose.model import bodypose_model, handpose_model

    def without_first_prefix(model) -> dict:  # the body/hand files omit the top-level module name
        return {key.split(".", 1)[1]: value for key, value in model.state_dict().items()}

    return {"body_pose_model.pth": without_first_prefix(bodypose_model()),
            "hand_pose_model.pth": without_first_prefix(handpose_model()),
            "facenet.pth": FaceNet().state_dict()}


def _normalbae() -> dict[str, Any]:
    from controlnet_aux.normalbae.nets.NNET import NNET

    args = types.SimpleNamespace(mode="client", architecture="BN", pretrained="scannet", sampling_ratio=0.4,
                                 importance_ratio=0.7)  # what NormalBaeDetector.from_pretrained passes
    return {"scannet.pt": {"model": NNET(args).state_dict()}}


ANNOTATORS = {
    "hed": (Annotator("HEDdetector", _hed, ("ControlNetHED.pth",)),
            "HED soft-edge detector (also thresholded into scribbles)"),
    "lineart": (Annotator("LineartDetector", _lineart, ("sk_model.pth", "sk_model2.pth")),
                "Line-art generator (fine and coarse)"),
    "openpose": (Annotator("OpenposeDetector", _openpose, ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth")),
                 "OpenPose body, hand and face networks"),
    "normalbae": (Annotator("NormalBaeDetector", _normalbae, ("scannet.pt",)), "NormalBAE surface-normal estimator"),
}


# ---- depth and segmentation (transformers) ------------------------------------------------------

@dataclass
class DenseHandle:
    """A transformers dense-prediction model with its image processor."""

    model: Any
    processor: Any
    device: Any


def load_dense(context: LoadContext, model_class: str) -> DenseHandle:
    import transformers

    model = getattr(transformers, model_class).from_pretrained(context.source, **context.weights())
    processor = transformers.AutoImageProcessor.from_pretrained(context.source, **context.hub())
    return DenseHandle(model.to(context.device).eval(), processor, context.device)


def build_tiny_depth(folder: Path) -> None:
    """Depth Anything V2 (DINOv2 backbone + DPT head) at toy width, with the published processor settings."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            image_size=518, patch_size=14, reshape_hidden_states=False,
                            out_features=["stage1", "stage2", "stage3", "stage4"])
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8, patch_size=14)
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      resample=3, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                      do_pad=False).save_pretrained(folder)


def build_tiny_segmentation(folder: Path) -> None:
    """UperNet with a ConvNeXt backbone predicting the 150 ADE20K classes, as the OpenMMLab checkpoint."""
    import torch
    from transformers import ConvNextConfig, SegformerImageProcessor, UperNetConfig, UperNetForSemanticSegmentation

    torch.manual_seed(0)
    backbone = ConvNextConfig(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                              out_features=["stage1", "stage2", "stage3", "stage4"])
    config = UperNetConfig(backbone_config=backbone, hidden_size=16, auxiliary_in_channels=32, num_labels=150)
    UperNetForSemanticSegmentation(config).save_pretrained(folder)
    SegformerImageProcessor(size={"height": 512, "width": 512}, do_reduce_labels=False).save_pretrained(folder)


# ---- the table ---------------------------------------------------------------------------------

CONTROLNET_CHECKPOINTS = {
    "canny": "lllyasviel/control_v11p_sd15_canny",
    "depth": "lllyasviel/control_v11f1p_sd15_depth",
    "openpose": "lllyasviel/control_v11p_sd15_openpose",
    "softedge": "lllyasviel/control_v11p_sd15_softedge",
    "scribble": "lllyasviel/control_v11p_sd15_scribble",
    "lineart": "lllyasviel/control_v11p_sd15_lineart",
    "seg": "lllyasviel/control_v11p_sd15_seg",
    "normal": "lllyasviel/control_v11p_sd15_normalbae",
}
# name -> (checkpoint, input channels, description). Canny maps go to the sketch adapter (white edges on
# black, like canny). The adapters are published as pickles only (read with weights_only=True).
ADAPTERS = {
    "sketch": ("TencentARC/t2iadapter_sketch_sd15v2", 1, "T2I-Adapter sketch/edges for SD-1.5 (v2), 77M parameters"),
    "depth": ("TencentARC/t2iadapter_depth_sd15v2", 3, "T2I-Adapter depth for SD-1.5 (v2), 77M parameters"),
    "openpose": ("TencentARC/t2iadapter_openpose_sd14v1", 3, "T2I-Adapter OpenPose (trained on SD-1.4), 77M parameters"),
    "seg": ("TencentARC/t2iadapter_seg_sd14v1", 3, "T2I-Adapter ADE20K segmentation (trained on SD-1.4), 77M parameters"),
}

SPECS = [
    *[ModelSpec(
        name=f"controlnet-{condition}", checkpoint=checkpoint,
        loader=load_controlnet_pipeline, tiny_builder=build_tiny_controlnet,
        description=f"ControlNet v1.1 {condition} for SD-1.5 (361M parameters) on the shared sd15 base",
    ) for condition, checkpoint in CONTROLNET_CHECKPOINTS.items()],
    *[ModelSpec(
        name=f"controlnet-t2iadapter-{name}", checkpoint=checkpoint,
        loader=load_adapter_pipeline,
        tiny_builder=lambda folder, channels=channels: build_tiny_adapter(folder, channels),
        description=description + " on the shared sd15 base",
    ) for name, (checkpoint, channels, description) in ADAPTERS.items()],
    *[ModelSpec(
        name=f"controlnet-annotator-{name}", checkpoint=ANNOTATORS_REPO,
        loader=lambda context, annotator=annotator: load_annotator(context, annotator),
        tiny_builder=lambda folder, annotator=annotator: build_tiny_annotator(folder, annotator),
        files=named_files(*annotator.files), description=description + " (controlnet_aux)",
    ) for name, (annotator, description) in ANNOTATORS.items()],
    ModelSpec(
        name="controlnet-annotator-depth", checkpoint="depth-anything/Depth-Anything-V2-Small-hf",
        loader=lambda context: load_dense(context, "AutoModelForDepthEstimation"), tiny_builder=build_tiny_depth,
        description="Depth Anything V2 small: relative depth for the depth ControlNet/T2I-Adapter",
    ),
    ModelSpec(
        name="controlnet-annotator-seg", checkpoint="openmmlab/upernet-convnext-small",
        loader=lambda context: load_dense(context, "UperNetForSemanticSegmentation"),
        tiny_builder=build_tiny_segmentation,
        description="UperNet ConvNeXt-S: ADE20K segmentation, coloured with the ADE palette ControlNet seg expects",
    ),
]
