"""Process-wide settings, read from the environment so a public Space can be stricter than a laptop.

`app.py` overrides them from its command line; tests set the environment.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROFILES = ("hub", "tiny")


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


@dataclass
class Settings:
    profile: str = field(default_factory=lambda: os.environ.get("PP_MODELS", "hub"))
    tiny_dir: Path = field(default_factory=lambda: Path(
        os.environ.get("PP_TINY_DIR", Path.home() / ".cache" / "paper-playground" / "tiny")))
    max_loaded_models: int = field(default_factory=lambda: _env_int("PP_MAX_LOADED_MODELS", 4))
    max_loaded_gib: float = field(default_factory=lambda: _env_float("PP_MAX_LOADED_GIB", 0.0))
    max_image_side: int = field(default_factory=lambda: _env_int("PP_MAX_IMAGE_SIDE", 4096))
    max_labels: int = field(default_factory=lambda: _env_int("PP_MAX_LABELS", 64))
    max_images: int = field(default_factory=lambda: _env_int("PP_MAX_IMAGES", 16))
    max_compare_cells: int = field(default_factory=lambda: _env_int("PP_MAX_COMPARE_CELLS", 24))

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown model profile {self.profile!r}; choose one of {PROFILES}")
        self.tiny_dir = Path(self.tiny_dir)


settings = Settings()
