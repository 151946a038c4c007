"""Face toolkit: detection with 5 landmarks, FFHQ-style alignment (and its inverse for paste-back),
differentiable identity embeddings and face parsing.

* Detector: facenet-pytorch's MTCNN. Its real weights ship inside the pip wheel, so it finds
  faces offline too; the tiny profile re-saves those same weights as safetensors.
* Identity: FaceNet `InceptionResnetV1`. The VGGFace2 network guides the swap; the
  CASIA-WebFace network, trained separately on other people, reports the similarity, so the
  score is not the guide grading itself. Tiny stand-ins keep the class with fewer repeated blocks.
* Parser: `jonathandinu/face-parsing` (SegFormer MiT-b5, CelebAMask-HQ labels).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .hub import bundled, url_file
from .registry import LoadContext, ModelSpec

if TYPE_CHECKING:
    import torch

# jonathandinu/face-parsing labels (NOT BiSeNet's order): 1 skin, 2 nose, 4/5 eyes, 6/7 brows,
# 10 mouth, 11/12 lips. DiffFace's face region: no hair, ears, neck, glasses.
FACE_CLASSES = (1, 2, 4, 5, 6, 7, 10, 11, 12)
PARSER_LABELS = ["background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
                 "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth"]
FACENET_RELEASES = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
VGGFACE2, CASIA_WEBFACE = "20180402-114759-vggface2.pt", "20180408-102900-casia-webface.pt"  # sizes in
# models/published/_downloads_outside_the_hub.json
FACENET_SIDE = 160  # the face crops FaceNet was trained on
TINY_FACENET_BLOCKS = [1, 1, 1]  # InceptionResnetV1 as published repeats its three blocks 5, 10, 5 times


# ---- detection -------------------------------------------------------------------------------

@dataclass
class Face:
    box: np.ndarray  # [4] x0, y0, x1, y1 in image pixels
    landmarks: np.ndarray  # [5, 2] (x, y): left eye, right eye, nose, left and right mouth corner (as seen)
    score: float

    @property
    def side(self) -> float:
        """The smaller side of the detection box, in pixels."""
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))


@dataclass
class FaceDetector:
    mtcnn: Any  # facenet_pytorch.MTCNN

    def detect(self, image: Any) -> list[Face]:
        """Every face in an RGB PIL image, left to right (so 'face 2' means the second from the left)."""
        import torch

        with torch.inference_mode():
            boxes, scores, points = self.mtcnn.detect(image, landmarks=True)
        if boxes is None:
            return []
        # With numpy 2, MTCNN returns object arrays: cast them.
        faces = [Face(np.asarray(box, dtype=np.float64), np.asarray(lm, dtype=np.float64).reshape(5, 2), float(score))
                 for box, score, lm in zip(boxes, scores, points)]
        return sorted(faces, key=lambda face: face.box[0] + face.box[2])


def load_mtcnn(context: LoadContext) -> FaceDetector:
    """MTCNN with the real weights packaged in facenet-pytorch's wheel, in both profiles (nothing to fetch)."""
    from facenet_pytorch import MTCNN

    return FaceDetector(MTCNN(keep_all=True, device=context.device).to(context.device).eval())


# ---- FFHQ alignment --------------------------------------------------------------------------

@dataclass
class AlignedFace:
    image: np.ndarray  # [size, size, 3] uint8
    matrix: np.ndarray  # [2, 3] affine map from original pixels to aligned pixels
    face: Face  # the detection, in original pixels

    @property
    def landmarks(self) -> np.ndarray:
        return transform_points(self.matrix, self.face.landmarks)

    @property
    def box(self) -> np.ndarray:
        """The detection box in aligned pixels: the axis-aligned square around its mapped corners."""
        x0, y0, x1, y1 = self.face.box
        corners = transform_points(self.matrix, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))
        centre = corners.mean(axis=0)
        half = (corners.max(axis=0) - corners.min(axis=0)).max() / 2
        return np.concatenate([centre - half, centre + half])


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ/CelebA-HQ crop square [c-x-y, c-x+y, c+x+y, c+x-y] from 5 landmarks.

    The 68-point recipe uses eye centres (means of the 6 eye-contour points) and the two mouth
    corners (points 48, 54); a 5-point detector gives exactly those: the eye points are eye
    centres and points 3, 4 are the mouth corners. The nose is not used by the recipe."""
    eye_left, eye_right, _, mouth_left, mouth_right = np.asarray(landmarks, dtype=np.float64)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (mouth_left + mouth_right) / 2 - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])  # rot90(v) = (-v_y, v_x)
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.invertAffineTransform(matrix)


def align_face(image: np.ndarray, face: Face, size: int) -> AlignedFace:
    """Warp the FFHQ quad of `face` to a `size`² square; outside the photo is mirror-padded."""
    import cv2

    quad = ffhq_quad(face.landmarks)
    # quad corners: upper-left, lower-left, upper-right go to (0,0), (0,size), (size,0).
    matrix = cv2.getAffineTransform(quad[[0, 1, 3]].astype(np.float32),
                                    np.float32([[0, 0], [0, size], [size, 0]])).astype(np.float64)
    source = np.asarray(image)
    shrink = np.hypot(*(quad[3] - quad[0])) / size
    if shrink > 2:  # pre-shrink big faces with area averaging, as the FFHQ script does, to avoid aliasing
        factor = 1 / np.floor(shrink)
        source = cv2.resize(source, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        scaled = matrix.copy()
        scaled[:, :2] /= factor
        aligned = cv2.warpAffine(source, scaled, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    else:
        aligned = cv2.warpAffine(source, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return AlignedFace(aligned, matrix, face)


# ---- identity --------------------------------------------------------------------------------

@dataclass
class FaceRecognizer:
    network: Any  # facenet_pytorch.InceptionResnetV1
    image_size: int

    def embed(self, faces: "torch.Tensor") -> "torch.Tensor":
        """Unit 512-d embeddings of face crops in [-1, 1] ([B,3,h,w]); differentiable.

        FaceNet's standardisation (x·255 − 127.5)/128 of a [0,255] image is 127.5/128 · x in [-1,1]."""
        import torch.nn.functional as F

        weight = next(self.network.parameters())
        faces = F.interpolate(faces.to(weight.device, weight.dtype), size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=False)
        return self.network(faces * (127.5 / 128))


def facenet_network(blocks: list[int]) -> Any:
    """`InceptionResnetV1` with the given number of blocks in its three repeated stages."""
    import torch
    from facenet_pytorch import InceptionResnetV1

    network = InceptionResnetV1()
    for stage, count in zip(("repeat_1", "repeat_2", "repeat_3"), blocks):
        setattr(network, stage, torch.nn.Sequential(*list(getattr(network, stage))[:count]))
    return network


def load_facenet(context: LoadContext) -> FaceRecognizer:
    """The release's `.pt` from torch.hub's cache (weights_only: tensors only), its classifier head dropped;
    the number of repeated blocks is read off the keys, so a tiny file loads through the same code."""
    import torch

    path = context.caches.torch_folder() / next(iter(context.download.files))
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {key: value for key, value in state.items() if not key.startswith("logits.")}
    blocks = [len({key.split(".")[1] for key in state if key.startswith(f"{stage}.")})
              for stage in ("repeat_1", "repeat_2", "repeat_3")]
    network = facenet_network(blocks)
    network.load_state_dict(state)
    network = network.to(context.device, context.dtype).eval().requires_grad_(False)
    return FaceRecognizer(network, FACENET_SIDE)


def build_tiny_facenet(folder: Path, seed: int, filename: str) -> None:
    """A FaceNet with one block per stage, saved as the release's pickled state dict under its file name."""
    import torch

    torch.manual_seed(seed)
    network = facenet_network(TINY_FACENET_BLOCKS)
    # Batch-norm statistics measured on noise images: with the default ones every random embedding
    # points the same way (cosine ≈ 1 for any pair), which leaves the identity guidance nothing to do.
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            module.momentum = None  # cumulative average over the calibration batches
    network.train()
    with torch.no_grad():
        for _ in range(4):
            network(torch.rand(16, 3, FACENET_SIDE, FACENET_SIDE) * 2 - 1)
    torch.save(network.state_dict(), folder / filename)


# ---- parsing ---------------------------------------------------------------------------------

@dataclass
class FaceParser:
    model: Any  # transformers.SegformerForSemanticSegmentation
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def logits(self, images: "torch.Tensor") -> "torch.Tensor":
        """Per-class logits [B,19,H,W] for images in [-1,1] at their own size H×W; differentiable."""
        import torch
        import torch.nn.functional as F

        height, width = images.shape[-2:]
        dtype = self.model.dtype
        pixels = F.interpolate((images.to(dtype) + 1) / 2, size=(self.image_size, self.image_size),
                               mode="bilinear", align_corners=False)
        mean = torch.tensor(self.mean, device=pixels.device, dtype=dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=pixels.device, dtype=dtype).view(1, 3, 1, 1)
        logits = self.model(pixel_values=(pixels - mean) / std).logits  # at H/4
        return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)

    def face_mask(self, logits: "torch.Tensor") -> "torch.Tensor":
        """[B,1,H,W] 1 where the parse is a face class (skin, brows, eyes, nose, mouth, lips)."""
        import torch

        labels = logits.argmax(dim=1, keepdim=True)
        return torch.isin(labels, torch.tensor(FACE_CLASSES, device=labels.device)).to(logits.dtype)


def load_face_parser(context: LoadContext) -> FaceParser:
    from transformers import SegformerForSemanticSegmentation, SegformerImageProcessor

    model = SegformerForSemanticSegmentation.from_pretrained(context.source, **context.weights())
    processor = SegformerImageProcessor.from_pretrained(context.source, **context.hub())
    return FaceParser(model.to(context.device).eval().requires_grad_(False), int(processor.size["height"]),
                      tuple(processor.image_mean), tuple(processor.image_std))


def build_tiny_face_parser(folder: Path) -> None:
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    torch.manual_seed(0)
    config = SegformerConfig(
        depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 16, 32], num_attention_heads=[1, 1, 1, 2], decoder_hidden_size=16,
        num_labels=len(PARSER_LABELS), id2label=dict(enumerate(PARSER_LABELS)),
        label2id={label: index for index, label in enumerate(PARSER_LABELS)},
    )
    SegformerForSemanticSegmentation(config).save_pretrained(folder)
    SegformerImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.485, 0.456, 0.406],
                            image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)


SPECS = [
    ModelSpec(
        name="face-detector-mtcnn",
        checkpoint="facenet-pytorch MTCNN (weights in the pip wheel)",
        loader=load_mtcnn,
        tiny_builder=None,
        files=bundled, licence="MIT (facenet-pytorch)",
        description="MTCNN face detector with 5 landmarks (real weights in both profiles)",
    ),
    ModelSpec(
        name="facenet-vggface2",
        checkpoint=FACENET_RELEASES + VGGFACE2,
        loader=load_facenet,
        tiny_builder=lambda folder: build_tiny_facenet(folder, seed=1, filename=VGGFACE2),
        files=url_file(111_898_327), licence="MIT (facenet-pytorch)",
        description="FaceNet InceptionResnetV1 (VGGFace2): identity guide of the face swap",
    ),
    ModelSpec(
        name="facenet-casia-webface",
        checkpoint=FACENET_RELEASES + CASIA_WEBFACE,
        loader=load_facenet,
        tiny_builder=lambda folder: build_tiny_facenet(folder, seed=2, filename=CASIA_WEBFACE),
        files=url_file(115_887_415), licence="MIT (facenet-pytorch)",
        description="FaceNet InceptionResnetV1 (CASIA-WebFace): independent identity judge of the face swap",
    ),
    ModelSpec(
        name="face-parser-segformer",
        checkpoint="jonathandinu/face-parsing",
        loader=load_face_parser,
        tiny_builder=build_tiny_face_parser,
        description="SegFormer MiT-b5 face parser (CelebAMask-HQ, 19 classes)",
    ),
]
