"""Decoding and resizing natural images into the uint8 C x H x W arrays of data/arrays.py."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import contextlib
from typing import Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

RESAMPLING = "Lanczos (antialiased), RGB, no aspect-preserving crop (the usual few-shot 84x84 recipe)"


class UnreadableImage(RuntimeError):
    """A source image cannot be decoded (truncated, damaged, not an image); the message names <class>/<file>."""


@contextlib.contextmanager
def decoding(path: Path) -> Iterator[None]:
    """Turn a decoding failure of ``path`` into UnreadableImage naming ``<class folder>/<file>`` and what to do."""
    try:
        yield
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(
            f"image {path.parent.name}/{path.name} cannot be read ({exc}): it is truncated or damaged. Replace it "
            f"with an intact copy from its source (for an archive metalr extracted, delete the extracted folder "
            f"under data.downloads so it is unpacked again) and rerun the data stage; the file: {path}") from exc


def load_rgb(path: Path, image_size: int, crop_bottom: int = 0) -> np.ndarray:
    """3 x image_size x image_size uint8; ``crop_bottom`` pixel rows are cut off before resizing.
    Raises UnreadableImage naming ``<class>/<file>`` when the file cannot be decoded."""
    with decoding(path), Image.open(path) as image:
        rgb = image.convert("RGB")
    if crop_bottom:
        rgb = rgb.crop((0, 0, rgb.width, rgb.height - crop_bottom))
    resized = rgb.resize((image_size, image_size), Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1)


def build_split(classes: list[str], files: Mapping[str, list[Path]], image_size: int, crop_bottom: int = 0,
                progress: bool = True, desc: str = "") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images of ``classes`` (in that order; each class's files sorted by name) and their labels."""
    missing = [c for c in classes if not files.get(c)]
    if missing:
        raise ValueError(f"{desc}: {len(missing)} classes of the split have no images, e.g. {missing[:3]}; "
                         "the split file does not match the archive")
    paths = [path for c in classes for path in sorted(files[c], key=lambda p: p.name)]
    images = np.empty((len(paths), 3, image_size, image_size), dtype=np.uint8)
    for i, path in enumerate(tqdm(paths, desc=desc, unit="img", disable=not progress)):
        images[i] = load_rgb(path, image_size, crop_bottom)
    labels = np.repeat(np.arange(len(classes), dtype=np.int64), [len(files[c]) for c in classes])
    return images, labels, list(classes)
