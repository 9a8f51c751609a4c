"""Committed split files: provenance, sizes, disjointness, and the seeded 'paper' splits."""
from __future__ import annotations

import json

import pytest

from metalr.data import splits

EXPECTED = {
    ("omniglot", "vinyals"): (1028, 172, 423),
    ("cifar_fs", "bertinetto"): (64, 16, 20),
    ("cub", "chen"): (100, 50, 50),
    ("cub", "meta_dataset"): (140, 30, 30),
    ("aircraft", "meta_dataset"): (70, 15, 15),
    ("aircraft", "paper"): (64, 16, 20),
    ("stanford_dogs", "dn4"): (70, 20, 30),
    ("mini_imagenet", "ravi"): (64, 16, 20),
}


@pytest.mark.parametrize("dataset,name", sorted(EXPECTED))
def test_committed_split_sizes_and_provenance(dataset, name):
    lists = splits.load_split(dataset, name)
    assert tuple(len(lists[s]) for s in ("train", "val", "test")) == EXPECTED[dataset, name]
    assert len(json.loads(splits.split_path(dataset, name).read_text())["provenance"]) > 40


def test_aircraft_paper_split_covers_the_same_100_variants_as_meta_dataset_and_is_reproducible():
    paper, md = splits.load_split("aircraft", "paper"), splits.load_split("aircraft", "meta_dataset")
    variants = sorted(c for lst in md.values() for c in lst)
    assert sorted(c for lst in paper.values() for c in lst) == variants
    assert splits.seeded_split(list(reversed(variants)), (64, 16, 20), 1) == paper  # input order does not matter
    assert splits.seeded_split(variants, (64, 16, 20), 2) != paper


def test_cub_paper_split_is_generated_from_classes_with_exactly_60_images():
    counts = {f"{i:03d}.Bird_{i}": (60 if i % 5 else 59) for i in range(1, 201)}  # 160 classes with 60 images
    with pytest.raises(splits.SplitFileError, match="pass class_counts"):
        splits.load_split("cub", "paper")
    lists = splits.load_split("cub", "paper", counts)
    chosen = [c for lst in lists.values() for c in lst]
    assert [len(lists[s]) for s in ("train", "val", "test")] == [64, 16, 20]
    assert all(counts[c] == 60 for c in chosen) and len(set(chosen)) == 100
    with pytest.raises(splits.SplitFileError, match="exactly 60 images"):
        splits.load_split("cub", "paper", {k: 59 for k in counts})


def test_unknown_split_names_the_config_key_and_the_choices():
    with pytest.raises(splits.SplitFileError, match=r"data.cub.split: .*\['chen', 'meta_dataset', 'paper'\]"):
        splits.load_split("cub", "nope")


def test_a_class_in_two_splits_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(splits, "SPLITS_DIR", tmp_path)
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "bad.json").write_text(json.dumps(
        {"provenance": "test", "train": ["a", "b"], "val": ["b"], "test": ["c"]}))
    with pytest.raises(splits.SplitFileError, match="'b' appears in train and val"):
        splits.load_split("toy", "bad")
