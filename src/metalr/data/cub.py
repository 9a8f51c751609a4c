"""CUB-200-2011 (Wah et al. 2011): 200 bird species, 11,788 images (41-60 per class), resized to 84x84.

Classes are the image folders named in classes.txt ("001.Black_footed_Albatross"); an image's class
comes from images.txt. The ``paper`` split is generated from the per-class image counts (splits.py)
and, like every split, recorded in the manifest.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

from metalr.data import images
from metalr.data.arrays import SPLITS, write_dataset
from metalr.data.fetch import extracted, fetch
from metalr.data.splits import load_split

DATASET = "cub"
FOLDER = "CUB_200_2011"
SMALLEST_CLASS = 41  # images in CUB's smallest class; every class of the 'paper' split has 60


def files_by_class(root: Path) -> dict[str, list[Path]]:
    base = root / FOLDER
    classes = {line.split(maxsplit=1)[1] for line in (base / "classes.txt").read_text().splitlines() if line.strip()}
    files: dict[str, list[Path]] = defaultdict(list)
    for line in (base / "images.txt").read_text().splitlines():
        if line.strip():
            relative = line.split(maxsplit=1)[1]
            files[relative.split("/", 1)[0]].append(base / "images" / relative)
    unknown = sorted(set(files) - classes)
    if unknown:
        raise ValueError(f"cub: images.txt names folders missing from classes.txt: {unknown[:3]}")
    return dict(files)


def build(out_dir: str | Path, data_cfg: Mapping[str, Any], progress: bool = True) -> dict:
    settings = data_cfg[DATASET]
    fetched = fetch(DATASET, data_cfg, progress)
    files = files_by_class(extracted(fetched[0], data_cfg, DATASET))
    split = load_split(DATASET, settings["split"], {c: len(f) for c, f in files.items()})
    arrays = {name: images.build_split(split[name], files, settings["image_size"], progress=progress,
                                       desc=f"cub {name}") for name in SPLITS}
    source = {"archives": [f.record() for f in fetched], "split": settings["split"],
              "image_size": settings["image_size"], "preprocessing": images.RESAMPLING}
    return write_dataset(out_dir, DATASET, arrays, source)
