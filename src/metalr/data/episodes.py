"""N-way K-shot episodes: seeded sampling, frozen and hashed test-task lists, and tensors.

A task draws ``ways`` distinct classes of one split; their order gives the task's labels 0..N-1.
Each class contributes ``shots`` support and ``queries`` query images, drawn without replacement,
so no image appears twice in a task.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from metalr import io
from metalr.algorithms.base import Task
from metalr.data.arrays import SplitArrays

TASK_LIST_FORMAT = 2  # 2: the header counts the distinct tasks
WNID = re.compile(r"\bn\d{8}\b")  # a WordNet noun id, as ImageNet-derived class names carry it ("n02085620-Chihuahua")


class TaskListFormatError(ValueError):
    """A task list written by another version of metalr (its ``format``); the message says to regenerate it."""


@dataclass(frozen=True)
class Episode:
    """Indices into one split: classes (in label order) and per-class support/query image indices."""

    classes: tuple[int, ...]
    support: tuple[tuple[int, ...], ...]
    query: tuple[tuple[int, ...], ...]

    def as_dict(self) -> dict:
        return {"classes": list(self.classes), "support": [list(s) for s in self.support],
                "query": [list(q) for q in self.query]}

    @classmethod
    def from_dict(cls, d: dict) -> "Episode":
        return cls(tuple(d["classes"]), tuple(map(tuple, d["support"])), tuple(map(tuple, d["query"])))


def check_counts(ways: int, shots: int, queries: int) -> None:
    for name, value in (("ways", ways), ("shots", shots), ("queries", queries)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def sample_episode(rng: np.random.Generator, by_class: Sequence[np.ndarray], ways: int, shots: int,
                   queries: int) -> Episode:
    check_counts(ways, shots, queries)
    if ways > len(by_class):
        raise ValueError(f"{ways}-way tasks need {ways} classes, the split has {len(by_class)}")
    classes = rng.choice(len(by_class), size=ways, replace=False)
    support, query = [], []
    for c in classes:
        pool = by_class[c]
        if shots + queries > len(pool):
            raise ValueError(f"class {c} has {len(pool)} images, a task needs {shots + queries}")
        picked = rng.choice(pool, size=shots + queries, replace=False)
        support.append(tuple(int(i) for i in picked[:shots]))
        query.append(tuple(int(i) for i in picked[shots:]))
    return Episode(tuple(int(c) for c in classes), tuple(support), tuple(query))


def episode_tensors(split: SplitArrays, episode: Episode, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> Task:
    """Images scaled to [0, 1]; labels follow the episode's class order."""
    def gather(groups: tuple[tuple[int, ...], ...]) -> tuple[torch.Tensor, torch.Tensor]:
        index = np.fromiter((i for g in groups for i in g), dtype=np.int64)
        labels = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
        images = torch.from_numpy(np.asarray(split.images[index], dtype=np.float32) / 255.0)
        return images.to(device=device, dtype=dtype), torch.from_numpy(labels).to(device)

    xs, ys = gather(episode.support)
    xq, yq = gather(episode.query)
    return Task(xs, ys, xq, yq)


def wordnet_id(class_name: str) -> str | None:
    match = WNID.search(class_name)
    return match.group(0) if match else None


def classes_seen_in_training(test_classes: Sequence[str], train_classes: Sequence[str]) -> list[int]:
    """Indices of the test classes whose WordNet id is also a meta-train class's (cross-domain leakage:
    e.g. 3 of Stanford Dogs' DN4 test breeds are miniImageNet meta-train classes). Classes without a
    WordNet id cannot be matched."""
    seen = {wnid for name in train_classes if (wnid := wordnet_id(name))}
    return [i for i, name in enumerate(test_classes) if wordnet_id(name) in seen]


def unseen_by_record(test_classes: Sequence[str], train_dataset: str, train_classes: Sequence[str],
                     train_manifest_sha256: str) -> dict[str, Any]:
    """What a cross-domain task list records about the classes it leaves out, and why."""
    excluded = classes_seen_in_training(test_classes, train_classes)
    return {"dataset": train_dataset, "split": "train", "manifest_sha256": train_manifest_sha256,
            "matched_by": "WordNet id",
            "classes_with_wordnet_id": sum(wordnet_id(c) is not None for c in test_classes),
            "excluded": [{"index": i, "class": test_classes[i], "wordnet_id": wordnet_id(test_classes[i])}
                         for i in excluded],
            "classes_total": len(test_classes), "classes_remaining": len(test_classes) - len(excluded)}


def distinct_tasks(episodes: Sequence[dict]) -> int:
    """How many of the episodes (``Episode.as_dict`` form) differ as tasks: the same classes with the same
    support and query images count once, whatever their label order. A split with few classes or few
    images per class repeats tasks in a long list."""
    return len({frozenset((c, frozenset(s), frozenset(q)) for c, s, q in zip(e["classes"], e["support"], e["query"]))
                for e in episodes})


def make_task_list(split: SplitArrays, *, dataset: str, split_name: str, ways: int, shots: int,
                   queries: int, tasks: int, seed: int, source_manifest_sha256: str | None = None,
                   split_sha256: Mapping[str, str] | None = None,
                   unseen_by: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The frozen list of evaluation (or validation) tasks; its hash is stored with every result scored on it.
    The header records ``distinct_tasks``, the number of different tasks among the ``tasks`` drawn, and the
    data it indexes: exactly one of ``source_manifest_sha256`` (a test list: the dataset manifest's sha256,
    which evaluation and the report check) and ``split_sha256`` (a validation list: the sha256 of its split's
    array files, ``arrays.split_hashes``, so that it records nothing of the test split and tuning outputs do
    not change with it).

    ``unseen_by`` (``unseen_by_record``) makes a cross-domain list: its ``excluded`` classes are never
    drawn, and the record is kept in the list's header. Raises ValueError when too few classes remain, or
    unless exactly one of the two hashes is given."""
    if (source_manifest_sha256 is None) == (split_sha256 is None):
        raise ValueError("a task list records either its dataset manifest's sha256 or its split's array hashes")
    rng = np.random.default_rng(seed)
    excluded = {entry["index"] for entry in (unseen_by or {}).get("excluded", [])}
    kept = [c for c in range(split.num_classes) if c not in excluded]
    by_class = split.indices_by_class()
    by_class = [by_class[c] for c in kept]
    episodes = []
    for _ in range(tasks):
        episode = sample_episode(rng, by_class, ways, shots, queries)
        episodes.append(Episode(tuple(kept[c] for c in episode.classes), episode.support, episode.query).as_dict())
    header = {"format": TASK_LIST_FORMAT, "dataset": dataset, "split": split_name, "ways": ways,
              "shots": shots, "queries": queries, "tasks": tasks, "distinct_tasks": distinct_tasks(episodes),
              "seed": seed}
    if source_manifest_sha256 is not None:
        header["dataset_manifest_sha256"] = source_manifest_sha256
    else:
        header["split_sha256"] = dict(split_sha256)
    if unseen_by is not None:
        header["unseen_by"] = dict(unseen_by)
    return {**header, "sha256": io.sha256_json({**header, "episodes": episodes}), "episodes": episodes}


def load_task_list(path: str | Path) -> dict[str, Any]:
    """A frozen task list, after checking its format (TaskListFormatError) and its own sha256
    (io.HashMismatch when it differs, io.UnreadableFile when it is not readable JSON)."""
    remedy = "rerun the tasks stage that writes it (metalr tasks)"
    task_list = io.read_json(path, remedy)
    if not isinstance(task_list, dict) or task_list.get("format") != TASK_LIST_FORMAT:
        found = task_list.get("format") if isinstance(task_list, dict) else None
        raise TaskListFormatError(f"task list {path} has format {found!r}, this metalr reads format "
                                  f"{TASK_LIST_FORMAT}; regenerate it (metalr tasks, or its Snakemake/DVC stage)")
    body = {k: v for k, v in task_list.items() if k != "sha256"}
    if io.sha256_json(body) != task_list.get("sha256"):
        raise io.HashMismatch(f"task list {path} does not match its own sha256: it was edited or damaged; {remedy}")
    return task_list
