"""Committed class splits: ``config/splits/<dataset>/<name>.json``.

Each file holds ``provenance`` (where the lists come from) and the class lists ``train``, ``val`` and
``test``; the config key ``data.<dataset>.split`` picks the file. Loading checks the lists are
disjoint and free of duplicates, so an edited file cannot leak classes between splits.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from metalr import io
from metalr.config import REPO_ROOT
from metalr.stages import SPLITS

SPLITS_DIR = REPO_ROOT / "config" / "splits"


class SplitFileError(ValueError):
    """A split file is missing or inconsistent."""


def split_path(dataset: str, name: str) -> Path:
    return SPLITS_DIR / dataset / f"{name}.json"


def available(dataset: str) -> list[str]:
    return sorted(p.stem for p in (SPLITS_DIR / dataset).glob("*.json"))


def load_split(dataset: str, name: str, class_counts: Mapping[str, int] | None = None) -> dict[str, list[str]]:
    """The class lists of a split file; a ``generate`` file is resolved from ``class_counts`` (class -> images)."""
    path = split_path(dataset, name)
    if not path.exists():
        raise SplitFileError(
            f"data.{dataset}.split: no split file {path}; available for {dataset}: {available(dataset)}"
        )
    data = io.read_json(path)
    missing = [key for key in ("provenance", *(("generate",) if "generate" in data else SPLITS)) if key not in data]
    if missing:
        raise SplitFileError(f"{path} lacks {missing}; a split file needs provenance and train/val/test (or generate)")
    lists = generated(path, data["generate"], class_counts) if "generate" in data else {
        split: list(data[split]) for split in SPLITS}
    seen: dict[str, str] = {}
    for split, classes in lists.items():
        for name_ in classes:
            if name_ in seen:
                raise SplitFileError(f"{path}: class {name_!r} appears in {seen[name_]} and {split}")
            seen[name_] = split
    return lists


def seeded_split(classes: list[str], sizes: tuple[int, int, int], seed: int) -> dict[str, list[str]]:
    """Sort the classes, shuffle them with numpy's PCG64(seed), cut into train/val/test of ``sizes``.

    Sorting first makes the result independent of the order the classes were found in (file system
    listing order is what made HSML's CUB/Aircraft splits irreproducible).
    """
    import numpy as np

    if len(set(classes)) != len(classes) or sum(sizes) > len(classes):
        raise SplitFileError(f"seeded_split: need {sum(sizes)} distinct classes, got {len(set(classes))}")
    order = np.random.Generator(np.random.PCG64(seed)).permutation(len(classes))
    shuffled = [sorted(classes)[i] for i in order]
    cuts = np.cumsum((0,) + tuple(sizes))
    return {split: shuffled[cuts[i]:cuts[i + 1]] for i, split in enumerate(SPLITS)}


def generated(path: Path, rule: Mapping[str, Any], class_counts: Mapping[str, int] | None) -> dict[str, list[str]]:
    """Resolve ``{"images": n, "sizes": [train, val, test], "seed": s}``: a seeded split of the classes with n images."""
    if class_counts is None:
        raise SplitFileError(f"{path} is generated from the dataset's image counts; pass class_counts")
    eligible = [c for c, count in class_counts.items() if count == rule["images"]]
    if len(eligible) < sum(rule["sizes"]):
        raise SplitFileError(f"{path}: {len(eligible)} classes have exactly {rule['images']} images, the split needs "
                             f"{sum(rule['sizes'])}")
    return seeded_split(eligible, tuple(rule["sizes"]), rule["seed"])
