"""CIFAR-FS (Bertinetto et al. 2019): the 100 CIFAR-100 fine classes, 600 32x32 images each, split 64/16/20.

Each class takes its 500 training then its 100 test images, in the order of the python pickles.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from metalr import io
from metalr.data.arrays import SPLITS, write_dataset
from metalr.data.fetch import extracted, fetch
from metalr.data.splits import load_split

DATASET = "cifar_fs"
IMAGES_PER_CLASS = 600
FOLDER = "cifar-100-python"


# What CIFAR-100's python pickles hold besides plain containers: numpy arrays, through these (Python 2
# pickles name numpy.core, newer ones numpy._core; protocol 5 uses _frombuffer). Nothing else is loaded.
NUMPY_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: any other global (a function a ``__reduce__``
    payload would call) is refused before it is looked up, so it never runs."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


def read_pickle(path: Path) -> dict:
    """The official archive's own pickles (verified by their checksum first), read allowing numpy arrays and
    plain containers only: io.UnsafeFile when the file holds anything else."""
    with open(path, "rb") as fh:
        try:
            return ArraysOnlyUnpickler(fh, encoding="latin1").load()
        except pickle.UnpicklingError as exc:
            raise io.UnsafeFile(f"{path} holds a pickled object that is not a numpy array or a plain container "
                                f"({exc}); refused without running it. The official CIFAR-100 archive holds none: "
                                f"delete the archive and its extracted folder, and fetch it again") from exc


def load_cifar100(root: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All 60,000 images (N x 3 x 32 x 32 uint8), fine labels, fine class names."""
    names = read_pickle(root / FOLDER / "meta")["fine_label_names"]
    parts = [read_pickle(root / FOLDER / part) for part in ("train", "test")]
    images = np.concatenate([np.asarray(p["data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for p in parts])
    labels = np.concatenate([np.asarray(p["fine_labels"], dtype=np.int64) for p in parts])
    return images, labels, names


def build(out_dir: str | Path, data_cfg: Mapping[str, Any], progress: bool = True) -> dict:
    settings = data_cfg[DATASET]
    fetched = fetch(DATASET, data_cfg, progress)
    images, labels, names = load_cifar100(extracted(fetched[0], data_cfg, DATASET))
    split = load_split(DATASET, settings["split"])
    unknown = [c for classes in split.values() for c in classes if c not in names]
    if unknown:
        raise ValueError(f"cifar_fs: split {settings['split']!r} names classes absent from CIFAR-100: {unknown[:3]}")
    arrays = {}
    for name in SPLITS:
        index = [np.flatnonzero(labels == names.index(c)) for c in split[name]]
        arrays[name] = (images[np.concatenate(index)],
                        np.repeat(np.arange(len(index), dtype=np.int64), [len(i) for i in index]), split[name])
    source = {"archives": [f.record() for f in fetched], "split": settings["split"],
              "preprocessing": "CIFAR-100 python pickles, 32x32 as stored, train then test images per class"}
    return write_dataset(out_dir, DATASET, arrays, source)
