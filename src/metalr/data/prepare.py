"""Build a dataset into its preprocessed folder, all or nothing."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from metalr.data.registry import DATASETS
from metalr.io import atomic_dir


def prepare(cfg: Mapping[str, Any], dataset: str, out_dir: Path) -> dict:
    """Build into a temporary sibling folder, then rename it into place: never a half-built dataset."""
    spec = DATASETS[dataset]
    with atomic_dir(out_dir) as tmp:
        manifest = spec.build(tmp, cfg["data"])
    return manifest
