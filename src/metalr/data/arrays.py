"""The preprocessed-dataset format shared by every dataset.

A dataset folder holds, per split, ``{split}_images.npy`` (uint8, N x C x H x W, memory-mappable) and
``{split}_labels.npy`` (int64, N, class index into that split's class list), plus ``manifest.json``:

    {"dataset": ..., "format": 1, "image_shape": [C, H, W],
     "splits": {split: {"classes": [...], "alphabets": [...] (optional), "counts": [...]}},
     "files": {file name: sha256}, "source": {...free-form provenance...}}

Loading checks every array against the manifest's hash, so an array that changed after
preprocessing is refused instead of silently used.
"""
from __future__ import annotations

import io as _io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from metalr import io
from metalr.stages import MANIFEST, SPLITS, split_array_files  # noqa: F401 (file names: the layout's one home)

FORMAT_VERSION = 1


class DatasetIntegrityError(RuntimeError):
    """A preprocessed file is missing or differs from its manifest."""


@dataclass(frozen=True)
class SplitArrays:
    images: np.ndarray  # uint8, N x C x H x W (memory-mapped, read-only)
    labels: np.ndarray  # int64, N
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def indices_by_class(self) -> list[np.ndarray]:
        order = np.argsort(self.labels, kind="stable")
        bounds = np.searchsorted(self.labels[order], np.arange(self.num_classes + 1))
        return [order[bounds[c] : bounds[c + 1]] for c in range(self.num_classes)]


def images_file(split: str) -> str:
    return split_array_files(split)[0]


def labels_file(split: str) -> str:
    return split_array_files(split)[1]


def npy_bytes(array: np.ndarray) -> bytes:
    """The ``.npy`` file of ``array`` (no pickled objects), in memory."""
    buffer = _io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_dataset(
    out_dir: str | Path,
    dataset: str,
    splits: Mapping[str, tuple[np.ndarray, np.ndarray, list[str]]],
    source: Mapping[str, Any],
    extra_split_fields: Mapping[str, Mapping[str, list]] | None = None,
) -> dict:
    """Write every split atomically, then the manifest last (its presence marks a complete dataset)."""
    out_dir = Path(out_dir)
    files: dict[str, str] = {}
    split_meta: dict[str, dict] = {}
    image_shape = None
    for split, (images, labels, classes) in splits.items():
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"{dataset}/{split}: images must be uint8 N x C x H x W, got {images.dtype} {images.shape}")
        if image_shape is None:
            image_shape = list(images.shape[1:])
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        for name, array in ((images_file(split), np.ascontiguousarray(images)), (labels_file(split), labels)):
            data = npy_bytes(array)
            io.write_bytes(out_dir / name, data)
            files[name] = io.sha256_bytes(data)
        counts = np.bincount(labels, minlength=len(classes)).tolist()
        split_meta[split] = {"classes": list(classes), "counts": counts}
        split_meta[split].update((extra_split_fields or {}).get(split, {}))
    manifest = {
        "dataset": dataset,
        "format": FORMAT_VERSION,
        "image_shape": image_shape,
        "splits": split_meta,
        "files": files,
        "source": dict(source),
    }
    io.write_json(out_dir / MANIFEST, manifest)
    return manifest


def read_manifest(data_dir: str | Path) -> dict:
    path = Path(data_dir) / MANIFEST
    if not path.exists():
        raise DatasetIntegrityError(
            f"{path} is missing: the dataset was not preprocessed (run the data stage, e.g. "
            f"`metalr data --config ...` or `snakemake {path}`)."
        )
    return io.read_json(path, f"delete {Path(data_dir)} and rerun the data stage")


def split_hashes(data_dir: str | Path, split: str) -> dict[str, str]:
    """The sha256 the manifest records for one split's two array files: what a result drawn from that
    split alone records of its data (a task list, a tuning trial), so that it does not change with the
    other splits."""
    files = read_manifest(data_dir)["files"]
    return {name: files[name] for name in (images_file(split), labels_file(split))}


def load_split(data_dir: str | Path, split: str, verify: bool = True) -> SplitArrays:
    """Memory-map one split read-only, after checking its files against the manifest."""
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    if split not in manifest["splits"]:
        raise DatasetIntegrityError(f"{data_dir / MANIFEST} has no split {split!r}; it has {sorted(manifest['splits'])}.")
    for name in (images_file(split), labels_file(split)):
        path = data_dir / name
        if not path.exists():
            raise DatasetIntegrityError(f"{path} is missing; rerun the data stage for {manifest['dataset']}.")
        if verify and io.sha256_file(path) != manifest["files"][name]:
            raise DatasetIntegrityError(
                f"{path} does not match the sha256 recorded in {data_dir / MANIFEST}: the file changed after "
                f"preprocessing. Delete {data_dir} and rerun the data stage for {manifest['dataset']}."
            )
    images = np.load(data_dir / images_file(split), mmap_mode="r", allow_pickle=False)
    labels = np.load(data_dir / labels_file(split), allow_pickle=False)
    return SplitArrays(images=images, labels=labels, classes=tuple(manifest["splits"][split]["classes"]))
