"""ArcFace through insightface: the pack's layout and routing, the torch conversion against onnxruntime on a
real aligned face, insightface's alignment, and the offline error."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import skimage.data
import torch
from PIL import Image

import models
from models.arcface import (ARCFACE, CROP, DETECTOR_FILE, DETECTOR_OUTPUTS, PACK, RECOGNIZER_FILE, RECOGNIZER_INPUT,
                            RECOGNIZER_OUTPUT, align_crop)
from models.cache import ModelCache
from models.faces import transform_points
from models.settings import Settings

REAL_PACK = Path("~/.insightface/models").expanduser() / PACK / RECOGNIZER_FILE


@pytest.fixture(scope="module")
def arcface():
    return models.get(ARCFACE)


@pytest.fixture(scope="module")
def astronaut_face():
    photo = skimage.data.astronaut()
    return photo, models.get("face-detector-mtcnn").detect(Image.fromarray(photo))[0]


def template() -> np.ndarray:
    from insightface.utils.face_align import arcface_dst

    return arcface_dst.astype(np.float64)


def pixels(crop: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(crop)).permute(2, 0, 1)[None].float() / 127.5 - 1


def test_tiny_pack_has_insightface_layout_names_and_shapes_and_is_routed_by_its_model_zoo(arcface):
    pack = Path(arcface.recognizer.model_file).parent
    assert pack.name == PACK and pack.parent.name == "models"
    assert {path.name for path in pack.glob("*.onnx")} == {DETECTOR_FILE, RECOGNIZER_FILE}
    graph = onnx.load(str(pack / RECOGNIZER_FILE)).graph
    assert [i.name for i in graph.input] == [RECOGNIZER_INPUT] and [o.name for o in graph.output] == [RECOGNIZER_OUTPUT]
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim][1:] == [3, CROP, CROP]
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim][1:] == [512]
    assert [o.name for o in onnx.load(str(pack / DETECTOR_FILE)).graph.output] == DETECTOR_OUTPUTS
    # insightface picked each model class from the file's inputs and outputs, as for the published pack.
    assert type(arcface.recognizer).__name__ == "ArcFaceONNX" and arcface.recognizer.taskname == "recognition"
    assert (arcface.recognizer.input_mean, arcface.recognizer.input_std) == (127.5, 127.5)
    assert type(arcface.detector).__name__ == "SCRFD" and arcface.detector.use_kps


def check_conversion(handle, crops: list[np.ndarray]) -> None:
    reference = np.stack([handle.onnx_embedding(crop) for crop in crops])
    with torch.no_grad():
        converted = handle.network(torch.cat([pixels(crop) for crop in crops])).numpy()
    assert np.abs(converted - reference).max() < 1e-4 * max(1.0, np.abs(reference).max())
    unit = handle.embed(torch.cat([pixels(crop) for crop in crops]))
    expected = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    assert np.abs(unit.detach().numpy() - expected).max() < 1e-4


def test_torch_conversion_matches_onnxruntime_on_a_real_aligned_face(arcface, astronaut_face):
    photo, face = astronaut_face
    crop, _ = align_crop(photo, face.landmarks)
    shifted, _ = align_crop(photo, face.landmarks + 3.0)
    check_conversion(arcface, [crop, shifted])
    assert not np.allclose(arcface.onnx_embedding(crop), arcface.onnx_embedding(shifted))  # not a constant network


@pytest.mark.skipif(not REAL_PACK.exists(), reason="the real buffalo_l pack is not in ~/.insightface")
def test_real_pack_conversion_matches_onnxruntime(astronaut_face):
    handle = ModelCache({ARCFACE: models.REGISTRY[ARCFACE]}, Settings(profile="hub", offline=True)).get(ARCFACE)
    photo, face = astronaut_face
    check_conversion(handle, [align_crop(photo, face.landmarks)[0]])


def test_norm_crop_maps_the_landmarks_onto_arcfaces_template(astronaut_face):
    photo, face = astronaut_face
    # Landmarks that are a similarity transform of the template (a rotated, scaled, shifted face) land on it.
    angle, scale, shift = np.radians(17), 2.3, np.array([180.0, 140.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    placed = template() @ rotation.T + shift
    _, matrix = align_crop(photo, placed)
    assert np.abs(transform_points(matrix, placed) - template()).max() < 0.01
    # A real face: the least-squares fit puts the landmarks' centroid on the template's within a pixel,
    # and every landmark near its template point (a real face is not exactly the template's shape).
    crop, matrix = align_crop(photo, face.landmarks)
    mapped = transform_points(matrix, face.landmarks)
    assert np.abs(mapped.mean(axis=0) - template().mean(axis=0)).max() < 1.0
    assert np.abs(mapped - template()).max() < 8
    # The crop shows that face: warping the photo and mapping the points agree (the eyes are dark, the cheek light).
    assert crop.shape == (CROP, CROP, 3)
    eye = crop[int(template()[0, 1]) - 2: int(template()[0, 1]) + 3, int(template()[0, 0]) - 2: int(template()[0, 0]) + 3]
    cheek = crop[78:84, 25:31]
    assert eye.mean() < cheek.mean()


def test_the_differentiable_template_crop_is_insightfaces_norm_crop(astronaut_face):
    """The face swap's ArcFace guide reads the face through `face_views` with the `norm_crop` matrix (a
    differentiable warp); it must show the pixels insightface's cv2 warp shows (rounding aside)."""
    from models.arcface import template_matrix
    from models.pipelines.face_swap import face_views

    photo, face = astronaut_face
    crop, _ = align_crop(photo, face.landmarks)
    image = torch.from_numpy(photo).permute(2, 0, 1)[None].float()
    views = face_views(image, torch.from_numpy(template_matrix(face.landmarks)), CROP)[0].permute(1, 2, 0).numpy()
    assert np.abs(views - crop).max() <= 0.51 and np.abs(views - crop).mean() < 0.3
