"""Omniglot (Lake et al. 2015) preprocessed for few-shot learning.

Images: the 105x105 binary PNGs are inverted so ink is high (255) on a 0 background, like ``glyphs``,
then resized to ``image_size`` with Pillow's Lanczos filter (antialiased), as uint8. Classes are
characters ``Alphabet/characterNN`` split by the file ``data.omniglot.split`` names
(config/splits/omniglot/, Vinyals et al.'s 1028/172/423 by default). With ``rotations`` every character
gives four classes, rotated by 0, 90, 180 and 270 degrees counter-clockwise (``.../rot090``), as in
MAML and Vinyals et al.; the rotated images are exact pixel rotations of the resized ones.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import PIL
from PIL import Image, ImageOps
from tqdm import tqdm

from metalr.data.arrays import SPLITS, write_dataset
from metalr.data.images import decoding
from metalr.data.fetch import extracted, fetch
from metalr.data.splits import load_split

DATASET = "omniglot"
IMAGES_PER_CHARACTER = 20
ROTATIONS = (0, 90, 180, 270)
FOLDERS = ("images_background", "images_evaluation")


def character_folders(roots: list[Path]) -> dict[str, Path]:
    """'Alphabet/characterNN' -> its folder, over the extracted background and evaluation zips."""
    found = {}
    for root in roots:
        for top in FOLDERS:
            for folder in sorted((root / top).glob("*/character*")):
                found[f"{folder.parent.name}/{folder.name}"] = folder
    return found


def load_image(path: Path, image_size: int) -> np.ndarray:
    with decoding(path), Image.open(path) as image:
        ink_high = ImageOps.invert(image.convert("L"))
    return np.asarray(ink_high.resize((image_size, image_size), Image.Resampling.LANCZOS), dtype=np.uint8)


def load_character(folder: Path, image_size: int) -> np.ndarray:
    files = sorted(folder.glob("*.png"))
    if len(files) != IMAGES_PER_CHARACTER:
        raise ValueError(f"omniglot: {folder} holds {len(files)} PNGs, expected {IMAGES_PER_CHARACTER}; "
                         "the archive is incomplete: delete the extracted folder and rerun")
    return np.stack([load_image(f, image_size) for f in files])[:, None]


def build_split(characters: list[str], folders: dict[str, Path], image_size: int, rotations: bool,
                progress: bool, desc: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    images, classes = [], []
    for character in tqdm(characters, desc=desc, unit="char", disable=not progress):
        base = load_character(folders[character], image_size)
        for angle in (ROTATIONS if rotations else (0,)):
            images.append(np.rot90(base, k=angle // 90, axes=(2, 3)))
            classes.append(f"{character}/rot{angle:03d}" if rotations else character)
    labels = np.repeat(np.arange(len(classes), dtype=np.int64), IMAGES_PER_CHARACTER)
    return np.ascontiguousarray(np.concatenate(images)), labels, classes


def build(out_dir: str | Path, data_cfg: Mapping[str, Any], progress: bool = True) -> dict:
    settings = data_cfg[DATASET]
    fetched = fetch(DATASET, data_cfg, progress)
    folders = character_folders([extracted(f, data_cfg, DATASET) for f in fetched])
    split = load_split(DATASET, settings["split"])
    missing = [c for classes in split.values() for c in classes if c not in folders]
    if missing:
        raise ValueError(f"omniglot: split {settings['split']!r} names {len(missing)} characters absent from the "
                         f"archives, e.g. {missing[:3]}")
    arrays = {
        name: build_split(split[name], folders, settings["image_size"], settings["rotations"], progress,
                          f"omniglot {name}")
        for name in SPLITS
    }
    source = {
        "archives": [f.record() for f in fetched],
        "split": settings["split"],
        "image_size": settings["image_size"],
        "rotations": settings["rotations"],
        "preprocessing": "PNG -> L, inverted (ink 255), Lanczos resize, uint8; rotations by np.rot90 (CCW)",
        "pillow_version": PIL.__version__,
    }
    return write_dataset(out_dir, DATASET, arrays, source)
