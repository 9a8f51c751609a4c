"""FGVC-Aircraft 2013b (Maji et al. 2013): 100 variants x 100 images, banner cropped, resized to 84x84.

Every image carries a 20-pixel copyright banner along its bottom edge; it is cut off before resizing
so the model cannot read the photographer's credit. Classes are variant names ("A340-300"), read
from images_variant_{train,val,test}.txt (all 10,000 images; the official train/val/test image split
is ignored, since few-shot splits divide classes, not images).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

from metalr.data import images
from metalr.data.arrays import SPLITS, write_dataset
from metalr.data.fetch import extracted, fetch
from metalr.data.splits import load_split

DATASET = "aircraft"
FOLDER = Path("fgvc-aircraft-2013b") / "data"
BANNER_PIXELS = 20
IMAGES_PER_CLASS = 100
LISTS = ("images_variant_train.txt", "images_variant_val.txt", "images_variant_test.txt")


def files_by_class(root: Path) -> dict[str, list[Path]]:
    base = root / FOLDER
    files: dict[str, list[Path]] = defaultdict(list)
    for name in LISTS:
        for line in (base / name).read_text().splitlines():
            if line.strip():
                image_id, variant = line.split(maxsplit=1)
                files[variant.strip()].append(base / "images" / f"{image_id}.jpg")
    return dict(files)


def build(out_dir: str | Path, data_cfg: Mapping[str, Any], progress: bool = True) -> dict:
    settings = data_cfg[DATASET]
    fetched = fetch(DATASET, data_cfg, progress)
    files = files_by_class(extracted(fetched[0], data_cfg, DATASET))
    split = load_split(DATASET, settings["split"])
    arrays = {name: images.build_split(split[name], files, settings["image_size"], crop_bottom=BANNER_PIXELS,
                                       progress=progress, desc=f"aircraft {name}") for name in SPLITS}
    source = {"archives": [f.record() for f in fetched], "split": settings["split"],
              "image_size": settings["image_size"],
              "preprocessing": f"bottom {BANNER_PIXELS} pixel rows (copyright banner) cropped; {images.RESAMPLING}"}
    return write_dataset(out_dir, DATASET, arrays, source)
