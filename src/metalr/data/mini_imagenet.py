"""miniImageNet (Vinyals et al. 2016; Ravi & Larochelle's split): 100 ILSVRC-2012 classes x 600 images, 84x84.

There is no reliable public archive, so the images come from one of two places:
* ``data.mini_imagenet.ilsvrc_train``: your ILSVRC-2012 train folder (``<wnid>/<wnid>_<n>.JPEG``), or
* a prepared ``mini_imagenet.tar`` in a ``data.mirror`` folder, with the same layout, vouched for by
  the mirror's MD5SUMS or SHA256SUMS (see fetch.py).
Either way the 600 images per class are the ones listed in config/splits/mini_imagenet/images/<split>.json
(the original ILSVRC file names), so both routes give the same arrays.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from metalr import io
from metalr.data import images, splits
from metalr.data.arrays import SPLITS, write_dataset
from metalr.data.fetch import extracted, fetch
from metalr.data.sources import SOURCES

DATASET = "mini_imagenet"
IMAGES_PER_CLASS = 600


def image_lists(split_name: str) -> dict[str, list[str]]:
    path = splits.SPLITS_DIR / DATASET / "images" / f"{split_name}.json"
    if not path.exists():
        raise splits.SplitFileError(f"data.mini_imagenet.split: no image list {path} for split {split_name!r}")
    return {wnid: [f"{wnid}_{n}.JPEG" for n in numbers] for wnid, numbers in io.read_json(path)["images"].items()}


def files_by_class(root: Path, names: Mapping[str, list[str]], where: str) -> dict[str, list[Path]]:
    files = {wnid: [root / wnid / name for name in listed] for wnid, listed in names.items()}
    missing = [path for paths in files.values() for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"mini_imagenet: {len(missing)} of the {sum(map(len, files.values()))} listed images are missing from "
            f"{where}, e.g. {missing[0]}. It must hold <wnid>/<wnid>_<n>.JPEG as in the ILSVRC-2012 train set.\n"
            f"{SOURCES[DATASET].manual}"
        )
    return files


def image_root(data_cfg: Mapping[str, Any], progress: bool) -> tuple[Path, str, dict]:
    """The folder holding <wnid>/ folders, a description of it for errors, and its provenance record."""
    ilsvrc = data_cfg[DATASET]["ilsvrc_train"]
    if ilsvrc:
        root = Path(ilsvrc)
        if not root.is_dir():
            raise FileNotFoundError(f"data.mini_imagenet.ilsvrc_train: {root} is not a folder; set it to your "
                                    "ILSVRC-2012 train folder (the one holding n01532829/, n01558993/, ...)")
        return root, f"data.mini_imagenet.ilsvrc_train ({root})", {"ilsvrc_train": str(root)}
    fetched = fetch(DATASET, data_cfg, progress)
    root = extracted(fetched[0], data_cfg, DATASET)
    return root, f"the mirror archive {fetched[0].path}", {"archives": [f.record() for f in fetched]}


def build(out_dir: str | Path, data_cfg: Mapping[str, Any], progress: bool = True) -> dict:
    settings = data_cfg[DATASET]
    split = splits.load_split(DATASET, settings["split"])
    root, where, origin = image_root(data_cfg, progress)
    files = files_by_class(root, image_lists(settings["split"]), where)
    arrays = {name: images.build_split(split[name], files, settings["image_size"], progress=progress,
                                       desc=f"mini_imagenet {name}") for name in SPLITS}
    source = {**origin, "split": settings["split"], "image_size": settings["image_size"],
              "preprocessing": images.RESAMPLING}
    return write_dataset(out_dir, DATASET, arrays, source)
