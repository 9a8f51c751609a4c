"""Every stage reads only the config keys the table of stages declares, and reads the keys it declares.

Each stage's command, exactly as the workflow runs it (metalr.stages), runs in a copy of the finished
tiny workflow on a config that records every key asked of it. A key read but not declared would be a
value whose change reruns nothing; a key declared but never read would rerun the job for nothing. This
keeps "a job reruns when, and only when, a value it reads changes" true as the code changes."""
from __future__ import annotations

import copy
import shutil
from typing import Any, Iterator

import pytest

from metalr import cli, stages
from metalr import config as config_mod
from tests.integration.conftest import TINY


class Recording(dict):
    """A config mapping that logs the dotted path of every key asked of it (values, membership, listing)."""

    def __init__(self, data: dict, path: str, log: set[str]):
        super().__init__(data)
        self._path, self._log = path, log

    def _key(self, key: Any) -> str:
        path = f"{self._path}.{key}" if self._path else str(key)
        self._log.add(path)
        return path

    def __getitem__(self, key):
        path, value = self._key(key), dict.__getitem__(self, key)
        return Recording(value, path, self._log) if isinstance(value, dict) else value

    def get(self, key, default=None):
        if dict.__contains__(self, key):
            return self[key]
        self._key(key)  # asked for, absent: the answer depends on it too
        return default

    def __contains__(self, key) -> bool:
        self._key(key)
        return dict.__contains__(self, key)

    def __iter__(self) -> Iterator:
        for key in dict.__iter__(self):
            self._key(key)
            yield key

    def keys(self):
        return list(iter(self))

    def items(self):
        return [(key, self[key]) for key in dict.keys(self)]

    def values(self):
        return [self[key] for key in dict.keys(self)]

    def __len__(self) -> int:
        return len(self.keys())

    def _whole(self) -> dict:
        """The plain content, every key of it logged: it leaves the recording whole."""
        return {key: value._whole() if isinstance(value, Recording) else copy.deepcopy(value)
                for key, value in self.items()}

    def __eq__(self, other) -> bool:
        return self._whole() == (other._whole() if isinstance(other, Recording) else other)

    __hash__ = None

    def __deepcopy__(self, memo) -> dict:
        return self._whole()

    def copy(self) -> dict:
        return self._whole()

    def __reduce__(self):
        return dict, (self._whole(),)


def leaf_reads(cfg: dict, log: set[str]) -> set[str]:
    """Logged paths that are values (not sections), or that the config lacks (asked for, absent)."""
    return {path for path in log if not isinstance(stages.lookup(cfg, path), dict)}


def covered(path: str, keys) -> bool:
    return any(path == key or path.startswith(key + ".") for key in keys)


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory):
    """A copy of the finished tiny workflow (its jobs may rewrite their outputs here) and its resolved config."""
    root = tmp_path_factory.mktemp("reads") / "tiny"
    shutil.copytree(tiny[0], root, symlinks=True)
    cfg = config_mod.load([root / "config" / "config.yaml"] + [root / f for f in TINY[1::2]])
    return root, cfg


# Every stage the workflow runs on the resolved config, on one job; training and evaluation on two (one
# algorithm, two rules). Cross-domain evaluation runs evaluation's code with a `test` job (the tiny config
# has none; test_cross_domain_workflow runs it).
CASES = [(stage.name, index) for stage in stages.default_stages(pdf=False) if stage.name != "evaluate_cross_domain"
         for index in ((0, 1) if stage.name in ("train", "evaluate") else (0,))]


@pytest.mark.parametrize("name, index", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_a_stage_reads_exactly_its_declared_keys(finished, monkeypatch, name, index):
    root, cfg = finished
    stage = stages.STAGES[name]
    job = stage.jobs(cfg)[index]
    log: set[str] = set()
    real_load = cli._load
    monkeypatch.setattr(cli, "_load", lambda args: Recording(real_load(args), "", log))
    monkeypatch.chdir(root)
    argv = [stage.command, "--config", str(stages.resolved_config_file(cfg)), *stages.argv(stage, cfg, job)]
    if stage.name in ("train", "evaluate"):
        argv.append("--no-progress")
    assert cli.main(argv) == 0, argv
    reads = leaf_reads(cfg, log)
    declared = stage.reads(cfg, job)
    undeclared = sorted(path for path in reads if not covered(path, declared + list(stage.also_reads)))
    assert not undeclared, f"{name} reads keys the table does not declare: {undeclared}"
    unread = [key for key in declared if not any(path == key or path.startswith(key + ".") for path in log)]
    assert not unread, f"{name} declares keys it never reads: {unread}"
