"""Build a dataset into its preprocessed folder, all or nothing, and never over a folder it did not build."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping

from metalr import io
from metalr.data.arrays import MANIFEST
from metalr.data.registry import DATASETS

SPACE_MARGIN = 64 << 20  # bytes kept free beyond the arrays themselves


class NotEnoughSpace(RuntimeError):
    """The file system of the dataset folder has too little free space for the build."""


def is_dataset_build(folder: Path, dataset: str) -> bool:
    """Whether ``folder`` is a build of ``dataset`` by this stage: it holds a manifest naming that dataset."""
    try:
        return io.read_json(folder / MANIFEST).get("dataset") == dataset
    except (OSError, io.UnreadableFile, AttributeError):
        return False


def check_free_space(out_dir: Path, needed: int) -> None:
    """Refuse a build whose arrays (``needed`` bytes, an estimate) would not fit beside the old folder."""
    existing = next((p for p in (out_dir, *out_dir.parents) if p.exists()), Path("."))
    free = shutil.disk_usage(existing).free
    if free < needed + SPACE_MARGIN:
        raise NotEnoughSpace(f"building {out_dir} needs about {needed} bytes (+{SPACE_MARGIN >> 20} MiB margin), "
                             f"{free} bytes are free on its file system; free some space or set data.root elsewhere")


def prepare(cfg: Mapping[str, Any], dataset: str, out_dir: Path) -> dict:
    """Build into a temporary sibling folder, then rename it into place: never a half-built dataset.

    An existing ``out_dir`` is replaced only if it is an earlier build of the same dataset (its
    manifest says so) or empty; anything else raises io.UnsafeTarget before any work. Raises
    NotEnoughSpace when the file system lacks the arrays' estimated size.
    """
    spec = DATASETS[dataset]
    out_dir = Path(out_dir)
    ours = (lambda folder: is_dataset_build(folder, dataset)), f"a build of dataset {dataset} (a {MANIFEST} naming it)"
    io.check_replaceable(out_dir, *ours)  # before the space check: a refusal is the more important news
    check_free_space(out_dir, spec.array_bytes(cfg["data"]))
    with io.atomic_dir(out_dir, *ours) as tmp:
        manifest = spec.build(tmp, cfg["data"])
    return manifest
