"""miniImageNet from an ILSVRC-2012 train folder or from a mirror's prepared archive, and the errors."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from metalr.data import arrays, mini_imagenet, splits
from metalr.data.download import ChecksumMismatch, DownloadError

CLASSES = {"train": ["n01", "n02"], "val": ["n03"], "test": ["n04"]}
NUMBERS = [7, 12]


@pytest.fixture
def tiny_split(tmp_path, monkeypatch):
    folder = tmp_path / "splits" / "mini_imagenet"
    (folder / "images").mkdir(parents=True)
    (folder / "tiny.json").write_text(json.dumps({"provenance": "test", **CLASSES}))
    (folder / "images" / "tiny.json").write_text(json.dumps(
        {"provenance": "test", "images": {w: NUMBERS for ws in CLASSES.values() for w in ws}}))
    monkeypatch.setattr(splits, "SPLITS_DIR", tmp_path / "splits")


def jpeg(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((20, 30, 3), value, dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def ilsvrc_members() -> dict[str, bytes]:
    wnids = [w for ws in CLASSES.values() for w in ws]
    return {f"{w}/{w}_{n}.JPEG": jpeg(40 * (i + 1)) for i, w in enumerate(wnids) for n in NUMBERS + [99]}


def data_cfg(tmp_path, ilsvrc=None, mirror=()):
    return {"downloads": str(tmp_path / "raw"), "mirror": [str(m) for m in mirror],
            "download": {"attempts": 1, "initial_delay_s": 0, "max_delay_s": 0, "timeout_s": 1},
            "mini_imagenet": {"split": "tiny", "image_size": 8, "ilsvrc_train": ilsvrc and str(ilsvrc)}}


def test_from_an_ilsvrc_train_folder_only_the_listed_images(tmp_path, tiny_split):
    for name, data in ilsvrc_members().items():
        (tmp_path / "train" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "train" / name).write_bytes(data)
    manifest = mini_imagenet.build(tmp_path / "out", data_cfg(tmp_path, ilsvrc=tmp_path / "train"), progress=False)
    assert manifest["splits"]["train"] == {"classes": ["n01", "n02"], "counts": [2, 2]}  # the _99 images are not listed
    train = arrays.load_split(tmp_path / "out", "train")
    assert train.images.shape == (4, 3, 8, 8)
    assert abs(int(train.images[2:].mean()) - 80) <= 3


def test_a_missing_listed_image_is_named(tmp_path, tiny_split):
    for name, data in ilsvrc_members().items():
        if name != "n03/n03_12.JPEG":
            (tmp_path / "train" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "train" / name).write_bytes(data)
    with pytest.raises(FileNotFoundError, match=r"1 of the 8 listed images are missing[\s\S]*n03_12.JPEG"):
        mini_imagenet.build(tmp_path / "out", data_cfg(tmp_path, ilsvrc=tmp_path / "train"), progress=False)
    assert not (tmp_path / "out").exists()


def test_a_wrong_ilsvrc_path_names_the_config_key(tmp_path, tiny_split):
    with pytest.raises(FileNotFoundError, match="data.mini_imagenet.ilsvrc_train: .* is not a folder"):
        mini_imagenet.build(tmp_path / "out", data_cfg(tmp_path, ilsvrc=tmp_path / "nope"), progress=False)


def test_no_folder_and_no_mirror_says_exactly_what_to_do(tmp_path, tiny_split):
    with pytest.raises(DownloadError, match=r"cannot be downloaded[\s\S]*set data.mini_imagenet.ilsvrc_train"):
        mini_imagenet.build(tmp_path / "out", data_cfg(tmp_path), progress=False)


def mirror_with_archive(tmp_path, sums: bool):
    folder = tmp_path / "mirror" / "mini_imagenet"
    folder.mkdir(parents=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in ilsvrc_members().items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (folder / "mini_imagenet.tar").write_bytes(buffer.getvalue())
    if sums:
        (folder / "SHA256SUMS").write_text(f"{hashlib.sha256(buffer.getvalue()).hexdigest()}  mini_imagenet.tar\n")
    return tmp_path / "mirror"


def test_from_a_mirror_archive_vouched_for_by_its_checksum_file(tmp_path, tiny_split):
    mirror = mirror_with_archive(tmp_path, sums=True)
    manifest = mini_imagenet.build(tmp_path / "out", data_cfg(tmp_path, mirror=[mirror]), progress=False)
    assert manifest["source"]["archives"][0]["verified_by"].endswith("SHA256SUMS")
    assert manifest["splits"]["test"]["counts"] == [2]


def test_a_mirror_archive_nobody_vouches_for_is_refused(tmp_path, tiny_split):
    mirror = mirror_with_archive(tmp_path, sums=False)
    with pytest.raises(ChecksumMismatch, match="no SHA256SUMS/MD5SUMS beside it lists it"):
        mini_imagenet.build(tmp_path / "out", data_cfg(tmp_path, mirror=[mirror]), progress=False)
