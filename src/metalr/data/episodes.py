"""N-way K-shot episodes: seeded sampling, frozen and hashed test-task lists, and tensors.

A task draws ``ways`` distinct classes of one split; their order gives the task's labels 0..N-1.
Each class contributes ``shots`` support and ``queries`` query images, drawn without replacement,
so no image appears twice in a task.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from metalr import io
from metalr.algorithms.base import Task
from metalr.data.arrays import SplitArrays

TASK_LIST_FORMAT = 2  # 2: the header counts the distinct tasks and records its split's array hashes


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


def distinct_tasks(episodes: Sequence[dict]) -> int:
    """How many of the episodes (``Episode.as_dict`` form) differ as tasks: the same classes with the same
    support and query images count once, whatever their label order. A split with few classes or few
    images per class repeats tasks in a long list."""
    return len({frozenset((c, frozenset(s), frozenset(q)) for c, s, q in zip(e["classes"], e["support"], e["query"]))
                for e in episodes})


def make_task_list(split: SplitArrays, *, dataset: str, split_name: str, ways: int, shots: int,
                   queries: int, tasks: int, seed: int, split_sha256: dict[str, str]) -> dict[str, Any]:
    """The frozen list of evaluation (or validation) tasks; its hash is stored with every result scored on it.
    The header records ``distinct_tasks``, the number of different tasks among the ``tasks`` drawn, and
    ``split_sha256``, the sha256 of the split's array files (``arrays.split_hashes``): the list names
    exactly the data it indexes and nothing of the other splits."""
    rng = np.random.default_rng(seed)
    by_class = split.indices_by_class()
    episodes = [sample_episode(rng, by_class, ways, shots, queries).as_dict() for _ in range(tasks)]
    header = {"format": TASK_LIST_FORMAT, "dataset": dataset, "split": split_name, "ways": ways,
              "shots": shots, "queries": queries, "tasks": tasks, "distinct_tasks": distinct_tasks(episodes),
              "seed": seed, "split_sha256": dict(split_sha256)}
    return {**header, "sha256": io.sha256_json({**header, "episodes": episodes}), "episodes": episodes}


def load_task_list(path: str | Path) -> dict[str, Any]:
    """The task list at ``path``; ValueError when it is of another format or does not match its own sha256."""
    task_list = io.read_json(path)
    if task_list.get("format") != TASK_LIST_FORMAT:
        raise ValueError(f"task list {path} has format {task_list.get('format')!r}, this metalr reads format "
                         f"{TASK_LIST_FORMAT}; regenerate it (metalr tasks, or its Snakemake/DVC stage)")
    body = {k: v for k, v in task_list.items() if k != "sha256"}
    if io.sha256_json(body) != task_list["sha256"]:
        raise ValueError(f"task list {path} does not match its own sha256: it was edited; regenerate it")
    return task_list
