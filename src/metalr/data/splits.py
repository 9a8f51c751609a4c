"""Committed class splits: ``config/splits/<dataset>/<name>.json``.

Each file holds ``provenance`` (where the lists come from) and the class lists ``train``, ``val`` and
``test``; the config key ``data.<dataset>.split`` picks the file. Loading checks the lists are
disjoint and free of duplicates, so an edited file cannot leak classes between splits.
"""
from __future__ import annotations

from pathlib import Path

from metalr import io
from metalr.config import REPO_ROOT
from metalr.data.arrays import SPLITS

SPLITS_DIR = REPO_ROOT / "config" / "splits"


class SplitFileError(ValueError):
    """A split file is missing or inconsistent."""


def split_path(dataset: str, name: str) -> Path:
    return SPLITS_DIR / dataset / f"{name}.json"


def split_files(dataset: str) -> list[str]:
    """Repo-relative paths of a dataset's split files: inputs of its data stage."""
    return [str(p.relative_to(REPO_ROOT)) for p in sorted((SPLITS_DIR / dataset).glob("*.json"))]


def available(dataset: str) -> list[str]:
    return sorted(p.stem for p in (SPLITS_DIR / dataset).glob("*.json"))


def load_split(dataset: str, name: str) -> dict[str, list[str]]:
    path = split_path(dataset, name)
    if not path.exists():
        raise SplitFileError(
            f"data.{dataset}.split: no split file {path}; available for {dataset}: {available(dataset)}"
        )
    data = io.read_json(path)
    missing = [key for key in ("provenance", *SPLITS) if key not in data]
    if missing:
        raise SplitFileError(f"{path} lacks {missing}; a split file needs provenance, train, val and test")
    lists = {split: list(data[split]) for split in SPLITS}
    seen: dict[str, str] = {}
    for split, classes in lists.items():
        for name_ in classes:
            if name_ in seen:
                raise SplitFileError(f"{path}: class {name_!r} appears in {seen[name_]} and {split}")
            seen[name_] = split
    return lists
