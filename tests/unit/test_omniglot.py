"""Omniglot built from the real mirror (../shared/data/omniglot beside the repository)."""
from __future__ import annotations

import hashlib
import zipfile
from io import BytesIO

import numpy as np
import pytest
from PIL import Image, ImageOps

from metalr.config import REPO_ROOT
from metalr.data import arrays, omniglot
from metalr.data.splits import load_split

MIRROR = REPO_ROOT.parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (MIRROR / "omniglot").is_dir(),
                                reason=f"the Omniglot mirror {MIRROR / 'omniglot'} is absent")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("omniglot")
    data_cfg = {"downloads": str(root / "raw"), "mirror": [str(MIRROR)],
                "download": {"attempts": 1, "initial_delay_s": 0, "max_delay_s": 0, "timeout_s": 1},
                "omniglot": {"split": "vinyals", "image_size": 28, "rotations": True}}
    manifest = omniglot.build(root / "out", data_cfg, progress=False)
    return root, manifest


def test_vinyals_split_with_rotations_has_1028_172_423_characters_x4(built):
    _, manifest = built
    split = load_split("omniglot", "vinyals")
    for name, characters in (("train", 1028), ("val", 172), ("test", 423)):
        meta = manifest["splits"][name]
        assert len(split[name]) == characters
        assert meta["classes"][:4] == [f"{split[name][0]}/rot{a:03d}" for a in (0, 90, 180, 270)]
        assert len(meta["classes"]) == 4 * characters and meta["counts"] == [20] * (4 * characters)


def test_images_are_28x28_uint8_with_ink_high(built):
    root, manifest = built
    assert manifest["image_shape"] == [1, 28, 28]
    images = arrays.load_split(root / "out", "test").images  # also checks every file's sha256
    assert images.dtype == np.uint8
    assert 0.03 < images.mean() / 255 < 0.2  # strokes are a small part of each image
    assert np.median(images) == 0 and images.max() == 255


def test_rotated_classes_are_exact_rotations(built):
    root, _ = built
    split = arrays.load_split(root / "out", "val")
    by_class = split.indices_by_class()
    upright = split.images[by_class[0]]
    for k in (1, 2, 3):
        assert np.array_equal(split.images[by_class[k]], np.rot90(upright, k=k, axes=(2, 3)))


def test_an_image_equals_the_inverted_lanczos_resized_png(built):
    root, manifest = built
    character = manifest["splits"]["train"]["classes"][0].rsplit("/", 1)[0]  # Angelic/character01
    with zipfile.ZipFile(MIRROR / "omniglot" / "images_evaluation.zip") as zf:  # Angelic is an evaluation alphabet
        names = sorted(n for n in zf.namelist() if n.startswith(f"images_evaluation/{character}/") and n.endswith(".png"))
        png = Image.open(BytesIO(zf.read(names[0])))
    expected = np.asarray(ImageOps.invert(png.convert("L")).resize((28, 28), Image.Resampling.LANCZOS))
    assert np.array_equal(arrays.load_split(root / "out", "train").images[0, 0], expected)


def test_mirror_archives_are_recorded_and_their_pngs_match_the_mirrors_list(built):
    root, manifest = built
    records = manifest["source"]["archives"]
    assert [r["file"] for r in records] == ["images_background.zip", "images_evaluation.zip"]
    assert all(r["origin"] == "mirror" and r["verified_by"].endswith("SHA256SUMS") for r in records)
    listed = dict(reversed(line.split(maxsplit=1)) for line in
                  (MIRROR / "omniglot" / "png_md5sums.txt").read_text().splitlines())
    extracted = {}
    for folder in ("images_background.zip.d", "images_evaluation.zip.d"):
        base = root / "raw" / "omniglot" / folder
        for path in base.rglob("*.png"):
            extracted[str(path.relative_to(base))] = hashlib.md5(path.read_bytes()).hexdigest()
    assert len(extracted) == 32_460
    assert extracted == listed
