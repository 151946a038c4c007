"""How models are loaded, read from the environment: the profile, the tiny cache's folder, the memory budget,
offline mode and the safety checker (the device policy is in `device.py`). `app.py` sets them from its
command line; tests set the environment. Per-request limits live in `demos/shared/limits.py`.
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


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class Settings:
    profile: str = field(default_factory=lambda: os.environ.get("PP_MODELS", "hub"))
    tiny_dir: Path = field(default_factory=lambda: Path(
        os.environ.get("PP_TINY_DIR", Path.home() / ".cache" / "paper-playground" / "tiny")))
    max_loaded_models: int = field(default_factory=lambda: env_int("PP_MAX_LOADED_MODELS", 4))
    # GiB that resident models may hold; 0: three quarters of this machine's memory (models/memory.py)
    max_loaded_gib: float = field(default_factory=lambda: env_float("PP_MAX_LOADED_GIB", 0.0))
    # Load only what is cached; never reach for the network (HF_HUB_OFFLINE=1 means the same)
    offline: bool = field(default_factory=lambda: env_flag("PP_OFFLINE") or env_flag("HF_HUB_OFFLINE"))
    # Stable Diffusion pipelines load their published safety checker and the tabs report what it blanks
    safety_checker: bool = field(default_factory=lambda: env_flag("PP_SAFETY_CHECKER"))

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown model profile {self.profile!r}; choose one of {PROFILES}")
        self.tiny_dir = Path(self.tiny_dir)
