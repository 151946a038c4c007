"""How models are loaded, read from the environment: the profile, the tiny-checkpoint folder and the
memory budget (the device policy is in `device.py`). `app.py` overrides the profile from its command
line; tests set the environment. Per-request limits live in `demos/limits.py`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROFILES = ("hub", "tiny")


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


@dataclass
class Settings:
    profile: str = field(default_factory=lambda: os.environ.get("PP_MODELS", "hub"))
    tiny_dir: Path = field(default_factory=lambda: Path(
        os.environ.get("PP_TINY_DIR", Path.home() / ".cache" / "paper-playground" / "tiny")))
    max_loaded_models: int = field(default_factory=lambda: env_int("PP_MAX_LOADED_MODELS", 4))
    max_loaded_gib: float = field(default_factory=lambda: env_float("PP_MAX_LOADED_GIB", 0.0))

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown model profile {self.profile!r}; choose one of {PROFILES}")
        self.tiny_dir = Path(self.tiny_dir)

