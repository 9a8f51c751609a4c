"""Every download source end to end: a tiny archive in the real format, served by a loopback server
with a fault injected, fetched, verified, extracted and preprocessed into the arrays format."""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metalr.data import arrays, splits
from metalr.data.download import Checksum, ChecksumMismatch, DownloadRefused
from metalr.data.registry import DATASETS
from metalr.data.sources import SOURCES

from .loopback import LoopbackServer, Served


def image_bytes(value: int, size=(16, 16), fmt="JPEG", banner: int = 0) -> bytes:
    array = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    if banner:
        array[-banner:] = 255  # a white copyright strip, like FGVC-Aircraft's
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def tar_bytes(members: dict[str, bytes], mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def all_classes(dataset: str, split: str) -> list[str]:
    return [c for lst in splits.load_split(dataset, split).values() for c in lst]


def build_served(tmp_path, monkeypatch, dataset, files, settings, faults=None, registry_bytes=None,
                 ignore_range=False):
    """Serve ``files`` as the dataset's archives (faults per file), build the dataset, return (out, manifest).

    The registry's checksums are those of ``registry_bytes`` (default: the served files)."""
    served = Served(files={f"/{name}": data for name, data in files.items()},
                    faults={f"/{name}": list(f) for name, f in (faults or {}).items()}, ignore_range=ignore_range)
    data_cfg = {"downloads": str(tmp_path / "raw"), "mirror": [],
                "download": {"attempts": 3, "initial_delay_s": 0.001, "max_delay_s": 0.001, "timeout_s": 5},
                dataset: settings}
    with LoopbackServer(served) as server:
        source = SOURCES[dataset]
        archives = tuple(replace(a, url=server.url(f"/{a.filename}"), size=None,
                                 checksum=Checksum("md5", hashlib.md5((registry_bytes or files)[a.filename]).hexdigest()))
                         for a in source.archives)
        monkeypatch.setitem(SOURCES, dataset, replace(source, archives=archives))
        manifest = DATASETS[dataset].build(tmp_path / "out", data_cfg)
    return tmp_path / "out", manifest, served


def split_arrays(out: Path, split: str) -> arrays.SplitArrays:
    return arrays.load_split(out, split)


def test_cifar_fs_from_its_python_pickles_after_a_dropped_connection(tmp_path, monkeypatch):
    names = sorted(all_classes("cifar_fs", "bertinetto"), reverse=True)  # not the split's order
    def part(per_class: int, offset: int) -> bytes:
        labels = [c for c in range(100) for _ in range(per_class)]
        data = np.array([np.full(3072, c + offset, dtype=np.uint8) for c in labels])
        return pickle.dumps({"data": data, "fine_labels": labels})
    archive = tar_bytes({"cifar-100-python/meta": pickle.dumps({"fine_label_names": names}),
                         "cifar-100-python/train": part(2, 0), "cifar-100-python/test": part(1, 100)}, "w:gz")
    out, manifest, served = build_served(tmp_path, monkeypatch, "cifar_fs", {"cifar-100-python.tar.gz": archive},
                                         {"split": "bertinetto"}, faults={"cifar-100-python.tar.gz": ["drop"]})
    assert served.requests[1][1] is not None  # resumed with a Range request
    assert manifest["image_shape"] == [3, 32, 32]
    test = split_arrays(out, "test")
    assert list(test.classes) == splits.load_split("cifar_fs", "bertinetto")["test"]
    for label, name in enumerate(test.classes):
        values = test.images[test.labels == label][:, 0, 0, 0].tolist()
        assert values == [names.index(name)] * 2 + [names.index(name) + 100]  # 2 train then 1 test image


def test_cub_from_its_tgz_and_index_files_after_503(tmp_path, monkeypatch):
    classes = sorted(all_classes("cub", "chen"))
    members = {"CUB_200_2011/classes.txt": "".join(f"{i} {c}\n" for i, c in enumerate(classes, 1)).encode()}
    images_txt, labels_txt = [], []
    for i, c in enumerate(classes, 1):
        for j in (1, 2):
            image_id = 2 * i + j
            images_txt.append(f"{image_id} {c}/{c}_{j}.jpg")
            labels_txt.append(f"{image_id} {i}")
            members[f"CUB_200_2011/images/{c}/{c}_{j}.jpg"] = image_bytes(i, size=(30, 20))
    members["CUB_200_2011/images.txt"] = "\n".join(images_txt).encode()
    members["CUB_200_2011/image_class_labels.txt"] = "\n".join(labels_txt).encode()
    out, manifest, served = build_served(tmp_path, monkeypatch, "cub", {"CUB_200_2011.tgz": tar_bytes(members, "w:gz")},
                                         {"split": "chen", "image_size": 12}, faults={"CUB_200_2011.tgz": ["503"]})
    assert len(served.requests) == 2
    assert manifest["image_shape"] == [3, 12, 12]
    val = split_arrays(out, "val")
    assert len(val.classes) == 50 and manifest["splits"]["val"]["counts"] == [2] * 50
    for label, name in enumerate(val.classes):
        assert abs(int(val.images[val.labels == label].mean()) - (classes.index(name) + 1)) <= 3


def test_aircraft_crops_the_banner_with_a_server_ignoring_range(tmp_path, monkeypatch):
    variants = all_classes("aircraft", "paper")
    base = "fgvc-aircraft-2013b/data"
    members, lines = {}, {"train": [], "val": [], "test": []}
    for i, variant in enumerate(variants):
        for j, part in enumerate(("train", "val")):
            image_id = f"{1000000 + 10 * i + j}"
            lines[part].append(f"{image_id} {variant}")
            members[f"{base}/images/{image_id}.jpg"] = image_bytes(40, size=(48, 56), banner=20)
    for part, rows in lines.items():
        members[f"{base}/images_variant_{part}.txt"] = "\n".join(rows).encode() + b"\n"
    served_files = {"fgvc-aircraft-2013b.tar.gz": tar_bytes(members, "w:gz")}
    out, manifest, served = build_served(tmp_path, monkeypatch, "aircraft", served_files,
                                         {"split": "paper", "image_size": 16}, ignore_range=True,
                                         faults={"fgvc-aircraft-2013b.tar.gz": ["drop"]})
    assert served.requests[1][1] is not None and len(served.requests) == 2  # Range ignored: restarted
    train = split_arrays(out, "train")
    assert len(train.classes) == 64 and train.images.shape[1:] == (3, 16, 16)
    assert train.images.max() < 90, "the white banner was not cropped"
    assert "banner" in manifest["source"]["preprocessing"]


def dogs_archives(breeds: list[str]) -> dict[str, bytes]:
    return {
        "images.tar": tar_bytes({f"Images/{b}/{b.split('-')[0]}_{j}.jpg": image_bytes(10 + i % 200)
                                 for i, b in enumerate(breeds) for j in (1, 2)}, "w"),
        "annotation.tar": tar_bytes({f"Annotation/{b}/{b.split('-')[0]}_1": b"<annotation/>" for b in breeds}, "w"),
        "lists.tar": tar_bytes({"file_list.mat": b"MATLAB 5.0", "train_list.mat": b"", "test_list.mat": b""}, "w"),
    }


def test_stanford_dogs_from_its_three_tars(tmp_path, monkeypatch):
    breeds = sorted(all_classes("stanford_dogs", "dn4"))
    out, manifest, _ = build_served(tmp_path, monkeypatch, "stanford_dogs", dogs_archives(breeds),
                                    {"split": "dn4", "image_size": 10})
    assert [len(manifest["splits"][s]["classes"]) for s in ("train", "val", "test")] == [70, 20, 30]
    assert [r["file"] for r in manifest["source"]["archives"]] == ["images.tar", "annotation.tar", "lists.tar"]
    split_arrays(out, "test")


def test_stanford_dogs_refusal_gives_manual_instructions_and_writes_nothing(tmp_path, monkeypatch):
    breeds = sorted(all_classes("stanford_dogs", "dn4"))
    with pytest.raises(DownloadRefused, match=r"HTTP 403[\s\S]*main.html in a browser"):
        build_served(tmp_path, monkeypatch, "stanford_dogs", dogs_archives(breeds),
                     {"split": "dn4", "image_size": 10}, faults={"images.tar": ["403"]})
    assert not (tmp_path / "out").exists()
    assert list((tmp_path / "raw" / "stanford_dogs").iterdir()) == []


def test_truncated_archive_is_set_aside_and_nothing_is_built(tmp_path, monkeypatch):
    breeds = sorted(all_classes("stanford_dogs", "dn4"))
    files = dogs_archives(breeds)
    served = dict(files, **{"images.tar": files["images.tar"][: len(files["images.tar"]) // 2]})
    with pytest.raises(ChecksumMismatch, match="corrupt-"):
        build_served(tmp_path, monkeypatch, "stanford_dogs", served, {"split": "dn4", "image_size": 10},
                     registry_bytes=files)
    assert not (tmp_path / "out").exists()
    assert [p.name.split(".corrupt-")[0] for p in (tmp_path / "raw" / "stanford_dogs").iterdir()] == ["images.tar"]


def test_omniglot_from_its_two_zips(tmp_path, monkeypatch):
    split_dir = tmp_path / "splits"
    (split_dir / "omniglot").mkdir(parents=True)
    chars = {"train": ["Alpha/character01", "Alpha/character02"], "val": ["Beta/character01"],
             "test": ["Gamma/character01"]}
    (split_dir / "omniglot" / "tiny.json").write_text(json.dumps({"provenance": "test", **chars}))
    monkeypatch.setattr(splits, "SPLITS_DIR", split_dir)
    zips = {}
    for top, alphabets in (("images_background", ["Alpha", "Beta"]), ("images_evaluation", ["Gamma"])):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            for alphabet in alphabets:
                for char in ("character01", "character02"):
                    for k in range(1, 21):
                        stroke = np.ones((105, 105), dtype=bool)
                        stroke[10:20, :] = False  # a black horizontal bar on white
                        png = io.BytesIO()
                        Image.fromarray(stroke).save(png, "PNG")
                        zf.writestr(f"{top}/{alphabet}/{char}/0001_{k:02d}.png", png.getvalue())
        zips[f"{top}.zip"] = buffer.getvalue()
    out, manifest, _ = build_served(tmp_path, monkeypatch, "omniglot", zips,
                                    {"split": "tiny", "image_size": 28, "rotations": True})
    train = split_arrays(out, "train")
    assert train.classes[:2] == ("Alpha/character01/rot000", "Alpha/character01/rot090")
    assert train.images.shape == (2 * 4 * 20, 1, 28, 28)
    upright, turned = train.images[0, 0], train.images[20, 0]
    assert upright[3:5].mean() > 200 and upright[20:].max() < 30  # the bar is ink (high), near the top
    assert turned[:, 3:5].mean() > 200  # rotated 90 degrees counter-clockwise: the bar is on the left
