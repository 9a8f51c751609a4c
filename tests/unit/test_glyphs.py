"""The offline glyphs dataset: class rules, splits, image properties, determinism, manifest integrity."""
from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest

from metalr import io
from metalr.data import arrays, glyphs

SMALL = 3  # classes per split in the quick builds used for determinism


def read_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    return np.load(data_dir / arrays.images_file(split)), np.load(data_dir / arrays.labels_file(split))


def file_bytes(data_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(data_dir.iterdir())}


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("glyphs_full")
    return out, glyphs.build(out, seed=1, progress=False)


@pytest.fixture(scope="module")
def small_builds(tmp_path_factory) -> dict[str, Path]:
    outs = {name: tmp_path_factory.mktemp(f"glyphs_{name}") for name in ("a", "b", "other_seed")}
    for name, seed in (("a", 7), ("b", 7), ("other_seed", 8)):
        glyphs.build(outs[name], seed=seed, progress=False, max_classes_per_split=SMALL)
    return outs


def test_full_build_has_enough_classes_with_20_instances_each(full):
    out, manifest = full
    total = sum(len(meta["classes"]) for meta in manifest["splits"].values())
    assert total >= glyphs.MIN_CLASSES
    for split, meta in manifest["splits"].items():
        assert meta["counts"] == [20] * len(meta["classes"])
        _, labels = read_split(out, split)
        assert labels.dtype == np.int64
        assert np.array_equal(labels, np.repeat(np.arange(len(meta["classes"])), 20))


def test_images_are_uint8_n_1_28_28(full):
    out, manifest = full
    assert manifest["image_shape"] == [1, 28, 28]
    for split, meta in manifest["splits"].items():
        images, _ = read_split(out, split)
        assert images.dtype == np.uint8
        assert images.shape == (20 * len(meta["classes"]), 1, 28, 28)


def test_images_have_ink_inside_a_blank_border(full):
    out, manifest = full
    for split in manifest["splits"]:
        images = read_split(out, split)[0][:, 0].astype(np.float64) / 255
        assert images.max(axis=(1, 2)).min() > 0.5, "an image has no solid ink"
        # Ink mass in full pixels: some letters are dots (CANADIAN SYLLABICS FINAL MIDDLE DOT), none is empty.
        assert images.sum(axis=(1, 2)).min() >= 1.0
        assert (images > 0.5).mean(axis=(1, 2)).max() < 0.6, "an image is saturated"
        assert 0.05 < images.mean() < 0.3
        # Nothing is cut off: the jitter keeps every glyph away from the frame.
        frame = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)
        assert frame.max() == 0


def test_splits_have_disjoint_alphabets_and_enough_classes(full):
    _, manifest = full
    alphabets = {}
    for split, meta in manifest["splits"].items():
        assert len(meta["alphabets"]) == len(meta["classes"])
        assert len(meta["classes"]) >= glyphs.MIN_SPLIT_CLASSES
        alphabets[split] = set(meta["alphabets"])
    assert set(manifest["splits"]) == {"train", "val", "test"}
    assert not alphabets["train"] & alphabets["val"]
    assert not alphabets["train"] & alphabets["test"]
    assert not alphabets["val"] & alphabets["test"]
    assert len(manifest["splits"]["train"]["classes"]) > len(manifest["splits"]["test"]["classes"])


def test_class_alphabet_is_the_script_in_its_name(full):
    _, manifest = full
    for meta in manifest["splits"].values():
        for name, alphabet in zip(meta["classes"], meta["alphabets"]):
            assert name.split(" ", 1)[1].startswith(alphabet + " ")


def test_collapse_keeps_one_class_per_case_folded_base_letter(full):
    _, manifest = full
    names = [name for meta in manifest["splits"].values() for name in meta["classes"]]
    code_points = [int(name.split(" ", 1)[0][2:], 16) for name in names]
    assert names == [f"U+{cp:04X} {unicodedata.name(chr(cp))}" for cp in code_points]
    keys = [glyphs.collapse_key(chr(cp)) for cp in code_points]
    assert None not in keys
    assert len(set(keys)) == len(keys)
    assert "U+0041 LATIN CAPITAL LETTER A" in names  # the group's undecomposed lowest code point
    for absorbed in "aáÁªµ":  # same group as A, or MICRO SIGN inside the Greek mu group
        assert not any(name.startswith(f"U+{ord(absorbed):04X} ") for name in names)
    assert any(name.startswith("U+039C GREEK CAPITAL LETTER MU") for name in names)


def test_every_class_is_drawn_by_at_least_min_fonts_fonts():
    candidates = glyphs.candidate_classes(min_fonts=4)
    assert min(len(c.fonts) for c in candidates.classes) >= 4
    assert candidates.letters_before_collapse > candidates.classes_after_collapse >= len(candidates.classes)
    excluded = {"LastResortHE-Regular.ttf", "cmsy10.ttf", "cmr10.ttf"}
    assert not excluded & {name for c in candidates.classes for name in c.fonts}


def test_script_names():
    assert glyphs.script_of("A") == "LATIN"
    assert glyphs.script_of("\u1401") == "CANADIAN SYLLABICS"
    assert glyphs.script_of("\U00010300") == "OLD ITALIC"
    assert glyphs.script_of("\u02c9") is None  # MODIFIER LETTER MACRON
    assert glyphs.collapse_key("\u00c1") == "a"
    assert glyphs.collapse_key("\u037a") is None  # GREEK YPOGEGRAMMENI: NFKD base is a space


def test_alphabet_assignment_covers_every_alphabet_once():
    counts = {"A": 400, "B": 300, "C": 150, "D": 100, "E": 50, "F": 30}
    assignment = glyphs.assign_alphabets(counts)
    assert assignment == glyphs.assign_alphabets(dict(reversed(counts.items())))
    assert set(assignment) == set(counts)
    assert set(assignment.values()) == {"train", "val", "test"}


def test_manifest_hashes_match_files(full):
    out, manifest = full
    on_disk = {path.name for path in out.iterdir()} - {arrays.MANIFEST}
    assert on_disk == set(manifest["files"])
    for name, digest in manifest["files"].items():
        assert io.sha256_file(out / name) == digest
    assert arrays.load_split(out, "test").num_classes == len(manifest["splits"]["test"]["classes"])


def test_manifest_source_records_provenance(full):
    _, manifest = full
    source = manifest["source"]
    assert source["generator"] == glyphs.GENERATOR and source["seed"] == 1
    assert source["instances_per_class"] == 20 and source["image_size"] == 28
    assert "DejaVuSans.ttf" in source["fonts"] and all(len(h) == 64 for h in source["fonts"].values())
    assert source["candidate_letters_before_collapse"] > source["classes_after_collapse"]


def test_same_seed_gives_identical_bytes(small_builds):
    first, second = file_bytes(small_builds["a"]), file_bytes(small_builds["b"])
    assert set(first) == {"manifest.json"} | {f(s) for s in arrays.SPLITS for f in (arrays.images_file, arrays.labels_file)}
    assert first == second


def test_other_seed_changes_images_only(small_builds):
    a, other = small_builds["a"], small_builds["other_seed"]
    for split in arrays.SPLITS:
        images_a, labels_a = read_split(a, split)
        images_o, labels_o = read_split(other, split)
        assert np.array_equal(labels_a, labels_o)
        assert not np.array_equal(images_a, images_o)
    assert arrays.read_manifest(a)["splits"] == arrays.read_manifest(other)["splits"]


def test_images_do_not_depend_on_build_order(full):
    out, manifest = full
    images, _ = read_split(out, "val")
    by_name = {c.name: c for c in glyphs.candidate_classes().classes}
    last = len(manifest["splits"]["val"]["classes"]) - 1
    for index in (0, last):
        rendered = glyphs.render_class(by_name[manifest["splits"]["val"]["classes"][index]], seed=1, instances=20)
        assert np.array_equal(rendered, images[20 * index : 20 * (index + 1)])


def test_too_few_classes_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="classes"):
        glyphs.build(tmp_path, min_fonts=1000, progress=False)
    assert not (tmp_path / arrays.MANIFEST).exists()
