"""The datasets the pipeline knows, and how each is built into the preprocessed format (data/arrays.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    build: Callable[[Path, Mapping[str, Any]], dict]  # (output folder, data.<name> config) -> manifest
    images_per_class: Callable[[Mapping[str, Any]], int]  # smallest class size, from the full config


def _build_glyphs(out_dir: Path, settings: Mapping[str, Any]) -> dict:
    from metalr.data import glyphs

    return glyphs.build(
        out_dir,
        seed=settings["seed"],
        instances_per_class=settings["instances_per_class"],
        image_size=settings["image_size"],
        min_fonts=settings["min_fonts"],
    )


DATASETS: dict[str, DatasetSpec] = {
    "glyphs": DatasetSpec(
        name="glyphs",
        description="letters rendered from matplotlib's bundled fonts; alphabets = Unicode scripts",
        build=_build_glyphs,
        images_per_class=lambda cfg: cfg["data"]["glyphs"]["instances_per_class"],
    ),
}


def dataset_dir(cfg: Mapping[str, Any], dataset: str) -> Path:
    return Path(cfg["data"]["root"]) / dataset
