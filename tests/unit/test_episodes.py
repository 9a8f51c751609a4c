"""The episode sampler and the frozen task lists."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metalr import io
from metalr.data.arrays import DatasetIntegrityError, load_split, write_dataset
from metalr.data.episodes import episode_tensors, load_task_list, make_task_list, sample_episode


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """Three splits whose pixels encode a globally unique class id and image id, so leaks are visible."""
    out = tmp_path_factory.mktemp("toy")
    splits, next_class = {}, 0
    for split, classes in (("train", 12), ("val", 6), ("test", 8)):
        per_class = 7
        labels = np.repeat(np.arange(classes), per_class)
        images = np.zeros((len(labels), 1, 4, 4), dtype=np.uint8)
        images[:, 0, 0, 0] = labels + next_class  # global class id
        images[:, 0, 0, 1] = np.arange(len(labels)) % 256  # image id within the split
        splits[split] = (images, labels, [f"c{next_class + c}" for c in range(classes)])
        next_class += classes
    write_dataset(out, "toy", splits, source={"kind": "synthetic"})
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 8), st.integers(1, 3), st.integers(1, 4))
def test_tasks_never_repeat_an_image_and_never_leave_their_split(dataset_dir, seed, ways, shots, queries):
    split = load_split(dataset_dir, "test")
    test_classes = set(range(18, 26))
    episode = sample_episode(np.random.default_rng(seed), split.indices_by_class(), ways, shots, queries)
    indices = [i for group in episode.support + episode.query for i in group]
    assert len(indices) == len(set(indices)) == ways * (shots + queries)
    assert len(set(episode.classes)) == ways
    task = episode_tensors(split, episode)
    global_ids = set(np.round(task.xs[:, 0, 0, 0].numpy() * 255).astype(int)) | set(
        np.round(task.xq[:, 0, 0, 0].numpy() * 255).astype(int))
    assert global_ids <= test_classes
    # labels follow the episode's class order, support and query alike
    for label, cls in enumerate(episode.classes):
        assert all(split.labels[i] == cls for i in episode.support[label] + episode.query[label])
    assert task.ys.tolist() == [c for c in range(ways) for _ in range(shots)]


def test_bad_counts_are_refused(dataset_dir):
    split = load_split(dataset_dir, "test")
    rng = np.random.default_rng(0)
    for ways, shots, queries in ((0, 1, 1), (2, 0, 1), (2, 1, 0), (9, 1, 1), (2, 4, 4)):
        with pytest.raises(ValueError):
            sample_episode(rng, split.indices_by_class(), ways, shots, queries)


def test_task_list_is_deterministic_and_hashed(dataset_dir, tmp_path):
    split = load_split(dataset_dir, "test")
    kwargs = dict(dataset="toy", split_name="test", ways=3, shots=1, queries=2, tasks=25, seed=1,
                  split_sha256={})
    first, second = make_task_list(split, **kwargs), make_task_list(split, **kwargs)
    assert io.canonical_json(first) == io.canonical_json(second)
    assert make_task_list(split, **{**kwargs, "seed": 2})["sha256"] != first["sha256"]
    path = tmp_path / "tasks.json"
    io.write_json(path, first)
    assert load_task_list(path)["sha256"] == first["sha256"]
    first["episodes"][0]["query"][0][0] += 1
    io.write_json(path, first)
    with pytest.raises(io.HashMismatch, match="does not match its own sha256"):
        load_task_list(path)


def test_tampered_array_is_refused(dataset_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dataset_dir, copy)
    data = bytearray((copy / "val_images.npy").read_bytes())
    data[-1] ^= 0xFF
    (copy / "val_images.npy").write_bytes(bytes(data))
    with pytest.raises(DatasetIntegrityError, match="does not match the sha256"):
        load_split(copy, "val")
    load_split(copy, "train")  # untouched splits still load
