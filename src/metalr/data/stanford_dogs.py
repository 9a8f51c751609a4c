"""Stanford Dogs (Khosla et al. 2011): 120 breeds, 20,580 images (148-252 per breed), resized to 84x84.

Classes are the folders of images.tar ("n02085620-Chihuahua"). annotation.tar (bounding boxes) and
lists.tar (the official image split) are fetched and verified with it, and recorded in the manifest,
but not used: the few-shot splits divide breeds, and whole images are kept as in DN4.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from metalr.data import images
from metalr.data.arrays import SPLITS, write_dataset
from metalr.data.fetch import extracted, fetch
from metalr.data.splits import load_split

DATASET = "stanford_dogs"
SMALLEST_CLASS = 148


def files_by_class(root: Path) -> dict[str, list[Path]]:
    return {folder.name: sorted(folder.glob("*.jpg")) for folder in sorted((root / "Images").iterdir())
            if folder.is_dir()}


def build(out_dir: str | Path, data_cfg: Mapping[str, Any], progress: bool = True) -> dict:
    settings = data_cfg[DATASET]
    fetched = fetch(DATASET, data_cfg, progress)
    images_archive = next(f for f in fetched if f.path.name == "images.tar")
    files = files_by_class(extracted(images_archive, data_cfg, DATASET))
    split = load_split(DATASET, settings["split"])
    arrays = {name: images.build_split(split[name], files, settings["image_size"], progress=progress,
                                       desc=f"stanford_dogs {name}") for name in SPLITS}
    source = {"archives": [f.record() for f in fetched], "split": settings["split"],
              "image_size": settings["image_size"], "preprocessing": images.RESAMPLING}
    return write_dataset(out_dir, DATASET, arrays, source)
