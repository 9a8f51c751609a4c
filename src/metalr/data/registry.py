"""The datasets the pipeline knows, and how each is built into the preprocessed format (data/arrays.py)."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping


GLYPH_CLASSES = 1203  # what the bundled fonts give (metalr.data.glyphs); a build-size estimate only


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    build: Callable[[Path, Mapping[str, Any]], dict]  # (output folder, the `data` config) -> manifest
    images_per_class: Callable[[Mapping[str, Any]], int]  # smallest class size, from the full config
    images: Callable[[Mapping[str, Any]], int]  # images in all splits (at most), from the `data` config
    channels: int = 3

    def array_bytes(self, data_cfg: Mapping[str, Any]) -> int:
        """About the size of the built arrays (images as uint8 plus int64 labels): what a build needs free."""
        size = data_cfg[self.name].get("image_size", 32)
        return self.images(data_cfg) * (self.channels * size * size + 8)


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


def _builder(module: str) -> Callable[[Path, Mapping[str, Any]], dict]:
    """A dataset module's ``build(out_dir, data_cfg)``, imported only when the dataset is built."""
    def build(out_dir: Path, data_cfg: Mapping[str, Any]) -> dict:
        return importlib.import_module(f"metalr.data.{module}").build(out_dir, data_cfg)

    return build


DATASETS: dict[str, DatasetSpec] = {
    "glyphs": DatasetSpec(
        name="glyphs",
        description="letters rendered from matplotlib's bundled fonts; alphabets = Unicode scripts",
        build=_build_glyphs,
        images_per_class=lambda cfg: cfg["data"]["glyphs"]["instances_per_class"],
        images=lambda data: GLYPH_CLASSES * data["glyphs"]["instances_per_class"],
        channels=1,
    ),
    "omniglot": DatasetSpec(
        name="omniglot",
        description="Omniglot handwritten characters (Lake et al. 2015), Vinyals split, optional x4 rotations",
        build=_builder("omniglot"),
        images_per_class=lambda cfg: 20,
        images=lambda data: 1623 * 20 * (4 if data["omniglot"]["rotations"] else 1),
        channels=1,
    ),
    "cifar_fs": DatasetSpec(
        name="cifar_fs",
        description="CIFAR-FS: CIFAR-100's 100 fine classes, 32x32, Bertinetto et al.'s 64/16/20 split",
        build=_builder("cifar_fs"),
        images_per_class=lambda cfg: 600,
        images=lambda data: 60_000,
    ),
    "aircraft": DatasetSpec(
        name="aircraft",
        description="FGVC-Aircraft 2013b: 100 variants x 100 images, banner cropped, 84x84",
        build=_builder("aircraft"),
        images_per_class=lambda cfg: 100,
        images=lambda data: 10_000,
    ),
    "cub": DatasetSpec(
        name="cub",
        description="CUB-200-2011 birds, 84x84; 'paper' split: 100 classes with exactly 60 images",
        build=_builder("cub"),
        images_per_class=lambda cfg: 60 if cfg["data"]["cub"]["split"] == "paper" else 41,  # CUB's smallest class
        images=lambda data: 11_788,
    ),
    "stanford_dogs": DatasetSpec(
        name="stanford_dogs",
        description="Stanford Dogs: 120 breeds, 84x84, DN4's 70/20/30 split",
        build=_builder("stanford_dogs"),
        images_per_class=lambda cfg: 148,  # the smallest breed
        images=lambda data: 20_580,
    ),
    "mini_imagenet": DatasetSpec(
        name="mini_imagenet",
        description="miniImageNet: 100 ILSVRC-2012 classes x 600 images, 84x84, Ravi & Larochelle's split",
        build=_builder("mini_imagenet"),
        images_per_class=lambda cfg: 600,
        images=lambda data: 60_000,
    ),
}
