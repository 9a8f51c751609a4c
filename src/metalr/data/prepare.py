"""Build a dataset into its preprocessed folder, all or nothing."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from metalr.data.registry import DATASETS


def prepare(cfg: Mapping[str, Any], dataset: str, out_dir: Path) -> dict:
    """Build into a temporary sibling folder, then rename it into place: never a half-built dataset."""
    spec = DATASETS[dataset]
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        manifest = spec.build(tmp, cfg["data"])
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest
