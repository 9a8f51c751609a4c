"""The datasets the pipeline knows, and how each is built into the preprocessed format (data/arrays.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    build: Callable[[Path, Mapping[str, Any]], dict]  # (output folder, the `data` config) -> manifest
    images_per_class: Callable[[Mapping[str, Any]], int]  # smallest class size, from the full config


def _build_glyphs(out_dir: Path, data_cfg: Mapping[str, Any]) -> dict:
    from metalr.data import glyphs

    settings = data_cfg["glyphs"]
    return glyphs.build(
        out_dir,
        seed=settings["seed"],
        instances_per_class=settings["instances_per_class"],
        image_size=settings["image_size"],
        min_fonts=settings["min_fonts"],
    )


def _build_omniglot(out_dir: Path, data_cfg: Mapping[str, Any]) -> dict:
    from metalr.data import omniglot

    return omniglot.build(out_dir, data_cfg)


DATASETS: dict[str, DatasetSpec] = {
    "glyphs": DatasetSpec(
        name="glyphs",
        description="letters rendered from matplotlib's bundled fonts; alphabets = Unicode scripts",
        build=_build_glyphs,
        images_per_class=lambda cfg: cfg["data"]["glyphs"]["instances_per_class"],
    ),
    "omniglot": DatasetSpec(
        name="omniglot",
        description="Omniglot handwritten characters (Lake et al. 2015), Vinyals split, optional x4 rotations",
        build=_build_omniglot,
        images_per_class=lambda cfg: 20,
    ),
}


def dataset_dir(cfg: Mapping[str, Any], dataset: str) -> Path:
    return Path(cfg["data"]["root"]) / dataset
