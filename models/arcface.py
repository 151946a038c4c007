"""ArcFace through insightface (Deng et al. 2019; the `buffalo_l` model pack): DiffFace's identity network.

The pack is a zip on insightface's GitHub releases (not the Hub; its files are licensed for non-commercial
research only), fetched on first use into `~/.insightface/models/buffalo_l` (models/downloads.py), and insightface's
`FaceAnalysis` / `model_zoo` routes each ONNX file to its model class by its inputs and outputs:
SCRFD `det_10g.onnx` (detection, 5 landmarks) and ArcFace `w600k_r50.onnx` (IResNet-50, 112²
RGB crops aligned by `norm_crop`, 512-d embedding). onnxruntime cannot be differentiated, so the
recogniser is converted to a torch module with onnx2torch; the onnxruntime session stays
available as the reference the conversion is checked against.

The tiny profile writes tiny ONNX files with the same names, input/output names and shapes into
the same folder layout, and loads them through the same `FaceAnalysis` call.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .hub import model_pack
from .registry import LoadContext, ModelSpec

if TYPE_CHECKING:
    import torch

ARCFACE = "arcface-buffalo-l"
PACK = "buffalo_l"
DETECTOR_FILE, RECOGNIZER_FILE = "det_10g.onnx", "w600k_r50.onnx"
CROP = 112  # ArcFace's input side
# The published files' input/output names (model_zoo routes on their count and shapes).
RECOGNIZER_INPUT, RECOGNIZER_OUTPUT = "input.1", "683"
DETECTOR_INPUT = "input.1"
DETECTOR_OUTPUTS = ["448", "471", "494", "451", "474", "497", "454", "477", "500"]  # scores, boxes, landmarks × strides 8/16/32
LICENCE_NOTE = ("insightface's buffalo_l pack (ArcFace w600k_r50, SCRFD det_10g) is licensed for **non-commercial "
                "research only**; it is downloaded from insightface's GitHub releases into ~/.insightface on first use.")


@dataclass
class ArcFace:
    """The pack's recogniser as a differentiable torch module, beside insightface's own objects."""

    network: Any  # onnx2torch GraphModule of w600k_r50.onnx
    recognizer: Any  # insightface ArcFaceONNX (onnxruntime): the reference for the conversion
    detector: Any  # insightface SCRFD from the same pack
    image_size: int = CROP

    def embed(self, faces: "torch.Tensor") -> "torch.Tensor":
        """Unit 512-d embeddings of face crops in [-1, 1] ([B,3,h,w] RGB); differentiable.

        ArcFace's input is (x255 − 127.5)/127.5 of an RGB crop, which is exactly the [-1,1] image."""
        import torch.nn.functional as F

        weight = next(self.network.parameters())
        faces = faces.to(weight.device, weight.dtype)
        if faces.shape[-1] != self.image_size or faces.shape[-2] != self.image_size:
            faces = F.interpolate(faces, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return F.normalize(self.network(faces).float(), dim=-1)

    def onnx_embedding(self, crop: np.ndarray) -> np.ndarray:
        """onnxruntime's embedding of one aligned RGB uint8 crop (insightface's `get_feat` wants BGR)."""
        return self.recognizer.get_feat(np.ascontiguousarray(crop[..., ::-1]))[0]


def template_matrix(landmarks: np.ndarray) -> np.ndarray:
    """insightface's ArcFace alignment (`estimate_norm`): the least-squares similarity transform of the 5
    landmarks (eyes, nose, mouth corners, as seen) onto ArcFace's 112² template; 2×3, pixels → crop pixels."""
    from insightface.utils import face_align

    return face_align.estimate_norm(np.asarray(landmarks, dtype=np.float32), CROP)


def align_crop(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """insightface's `norm_crop`: the 112² ArcFace crop of the face with these landmarks, and its 2×3 matrix."""
    from insightface.utils import face_align

    crop, matrix = face_align.norm_crop2(np.asarray(image), np.asarray(landmarks, dtype=np.float32), CROP)
    return crop, matrix


def load_arcface(context: LoadContext) -> ArcFace:
    """insightface's `FaceAnalysis` finds the pack (fetched before, as its own downloader would) under the profile's
    insightface root and routes its files."""
    import onnx2torch
    from insightface.app import FaceAnalysis

    analysis = FaceAnalysis(name=PACK, root=str(context.caches.insightface_folder()),
                            allowed_modules=["detection", "recognition"], providers=["CPUExecutionProvider"])
    recognizer = analysis.models["recognition"]
    network = onnx2torch.convert(recognizer.model_file)
    network = network.to(context.device, context.dtype).eval().requires_grad_(False)
    return ArcFace(network=network, recognizer=recognizer, detector=analysis.models["detection"])


# ---- tiny stand-ins ----------------------------------------------------------------------------

def _export(module: "torch.nn.Module", example: "torch.Tensor", input_name: str, outputs: list[str],
            dynamic: dict) -> Any:
    """ONNX of `module` with the published input/output names (torch refuses numeric names: renamed after)."""
    import onnx
    import torch

    placeholders = [f"out{index}" for index in range(len(outputs))]
    buffer = io.BytesIO()
    torch.onnx.export(module, example, buffer, input_names=[input_name], output_names=placeholders,
                      dynamic_axes={input_name: dynamic, **{name: {0: "N"} for name in placeholders}}, dynamo=False,
                      opset_version=13)  # the published files are opset 11–13; onnx2torch converts those
    model = onnx.load_from_string(buffer.getvalue())
    renames = dict(zip(placeholders, outputs))
    for node in model.graph.node:
        node.output[:] = [renames.get(name, name) for name in node.output]
    for output in model.graph.output:
        output.name = renames[output.name]
    onnx.checker.check_model(model)
    return model


class _TinyIResNet:
    """A two-block IResNet (ArcFace's residual unit: BN-Conv-BN-PReLU-Conv-BN + shortcut), 112² → 512."""

    @staticmethod
    def build() -> "torch.nn.Module":
        import torch
        from torch import nn

        class Block(nn.Module):
            def __init__(self, channels_in: int, channels_out: int) -> None:
                super().__init__()
                self.body = nn.Sequential(nn.BatchNorm2d(channels_in), nn.Conv2d(channels_in, channels_out, 3, 1, 1),
                                          nn.BatchNorm2d(channels_out), nn.PReLU(channels_out),
                                          nn.Conv2d(channels_out, channels_out, 3, 2, 1), nn.BatchNorm2d(channels_out))
                self.shortcut = nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, 2), nn.BatchNorm2d(channels_out))

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.body(x) + self.shortcut(x)

        return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.PReLU(8),  # 56²
                             Block(8, 16), Block(16, 16), Block(16, 32),  # 7²
                             nn.BatchNorm2d(32), nn.Flatten(), nn.Linear(32 * 7 * 7, 512), nn.BatchNorm1d(512))


def _calibrated(network: "torch.nn.Module", example_shape: tuple[int, ...]) -> "torch.nn.Module":
    """Batch-norm statistics measured on noise images: with the default ones every random embedding points
    the same way, which leaves identity guidance nothing to steer (as for the tiny FaceNet)."""
    import torch

    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            module.momentum = None
    network.train()
    with torch.no_grad():
        for _ in range(4):
            network(torch.rand(*example_shape) * 2 - 1)
    return network.eval()


class _TinySCRFD:
    """Three stride levels (8, 16, 32), two anchors each: scores [N,1], boxes [N,4], 5 landmarks [N,10]."""

    @staticmethod
    def build() -> "torch.nn.Module":
        import torch
        from torch import nn

        class Detector(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.levels = nn.ModuleList(nn.Conv2d(3, 8, stride, stride) for stride in (8, 16, 32))
                self.heads = nn.ModuleList(nn.ModuleList([nn.Conv2d(8, 2 * size, 1) for size in (1, 4, 10)])
                                           for _ in range(3))

            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
                outputs: list[list[torch.Tensor]] = [[], [], []]
                for level, heads in zip(self.levels, self.heads):
                    features = torch.relu(level(x))
                    for kind, (head, size) in enumerate(zip(heads, (1, 4, 10))):
                        out = head(features).permute(0, 2, 3, 1).reshape(-1, size)
                        outputs[kind].append(torch.sigmoid(out) if kind == 0 else out)
                return tuple(outputs[0] + outputs[1] + outputs[2])

        return Detector().eval()


def build_tiny_arcface(folder: Path) -> None:
    """`models/buffalo_l/{det_10g,w600k_r50}.onnx` under `folder`: insightface's layout and file names."""
    import onnx
    import torch

    pack = folder / "models" / PACK
    pack.mkdir(parents=True)
    torch.manual_seed(0)
    recognizer = _calibrated(_TinyIResNet.build(), (16, 3, CROP, CROP))
    onnx.save(_export(recognizer, torch.zeros(1, 3, CROP, CROP), RECOGNIZER_INPUT, [RECOGNIZER_OUTPUT], {0: "None"}),
              pack / RECOGNIZER_FILE)
    onnx.save(_export(_TinySCRFD.build(), torch.zeros(1, 3, 64, 64), DETECTOR_INPUT, DETECTOR_OUTPUTS,
                      {2: "?", 3: "?"}), pack / DETECTOR_FILE)


SPECS = [
    ModelSpec(
        name=ARCFACE,
        checkpoint=PACK,
        loader=load_arcface,
        tiny_builder=build_tiny_arcface,
        # Sizes of the zip and of the two files read: models/published/_downloads_outside_the_hub.json
        files=model_pack(288_621_354, {DETECTOR_FILE: 16_923_827, RECOGNIZER_FILE: 174_383_860}),
        licence="non-commercial research only",
        description="ArcFace IResNet-50 (WebFace600K) via insightface, converted to torch: identity guide "
                    "(non-commercial research licence)",
    ),
]
