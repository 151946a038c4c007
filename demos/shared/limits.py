"""Every per-request limit, read from the environment once, so a public Space can be stricter than a
laptop (`PP_MAX_STEPS=30 python app.py`). Each `run_*` checks its inputs against these, so the API
obeys them as the UI does; sliders use them as their maximum."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from models.settings import env_int


@dataclass
class Limits:
    max_steps: int = field(default_factory=lambda: env_int("PP_MAX_STEPS", 100))  # denoising steps
    max_images_per_run: int = field(default_factory=lambda: env_int("PP_MAX_IMAGES_PER_RUN", 4))  # generated
    max_images: int = field(default_factory=lambda: env_int("PP_MAX_IMAGES", 16))  # uploaded in one request
    max_labels: int = field(default_factory=lambda: env_int("PP_MAX_LABELS", 64))
    max_compare_cells: int = field(default_factory=lambda: env_int("PP_MAX_COMPARE_CELLS", 24))
    max_image_side: int = field(default_factory=lambda: env_int("PP_MAX_IMAGE_SIDE", 4096))  # larger is scaled down
    max_panorama_side: int = field(default_factory=lambda: env_int("PP_MAX_PANORAMA_SIDE", 4096))  # MultiDiffusion px
    max_queue: int = field(default_factory=lambda: env_int("PP_MAX_QUEUE", 32))  # requests waiting
    max_training_steps: int = field(default_factory=lambda: env_int("PP_MAX_TRAINING_STEPS", 800))  # personalisation
    max_training_photos: int = field(default_factory=lambda: env_int("PP_MAX_TRAINING_PHOTOS", 10))
    max_file_size: str = field(default_factory=lambda: os.environ.get("PP_MAX_FILE_SIZE", "20mb"))  # one upload


LIMITS = Limits()
