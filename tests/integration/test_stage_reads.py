"""Every stage reads exactly the config keys, and runs only the package code, that the table declares.

Each stage's command, as the workflow runs it (metalr.stages), runs in a fresh interpreter in a copy of
the finished tiny workflow, on a config that records every key asked of it (tests/integration/recording.py).
A key read but not declared would be a value whose change reruns nothing; a key declared but never read
would rerun the job for nothing; a module run but not declared would be an edit that reruns nothing. This
keeps "a job reruns when, and only when, a value it reads or its code changes" true as the code changes."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from metalr import config as config_mod
from metalr import stages
from tests.integration.conftest import TINY_FILES, TUNED_FILES
from tests.integration.workflow_helpers import run

RECORDING = Path(__file__).with_name("recording.py")


def covered(path: str, keys) -> bool:
    return any(path == key or path.startswith(key + ".") for key in keys)


def finished_copy(source: Path, files: list[str], tmp_path_factory) -> tuple[Path, dict]:
    """A copy of a finished workflow (its jobs may rewrite their outputs here) and its resolved config."""
    root = tmp_path_factory.mktemp("reads") / source.name
    shutil.copytree(source, root, symlinks=True)
    return root, config_mod.load([root / "config" / "config.yaml"] + [root / f for f in files])


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory):
    return finished_copy(tiny[0], TINY_FILES, tmp_path_factory)


@pytest.fixture(scope="module")
def finished_tuned(tuned, tmp_path_factory):
    return finished_copy(tuned[0], TUNED_FILES, tmp_path_factory)


# Every stage the workflow runs on the resolved config, on one job; training and evaluation on two (one
# algorithm, two rules). The cross-domain stages run the code of tasks and evaluate with a `test` job (the tiny
# config has none; test_cross_domain_workflow runs them). The tuning stages run in the tuned workflow, with
# the training and evaluation of a tuned run (which validates and reads its chosen.json) and of an untuned one.
CROSS_DOMAIN = ("tasks_cross_domain", "evaluate_cross_domain")
TUNING = ("val_tasks", "trial", "tune", "tuning_report")
CASES = [(stage.name, index, stage.name in TUNING) for stage in stages.default_stages(pdf=False)
         if stage.name not in CROSS_DOMAIN for index in ((0, 1) if stage.name in ("train", "evaluate") else (0,))]
CASES += [(name, index, True) for name in ("train", "evaluate") for index in (0, 1)]  # fixed, fixed-untuned


@pytest.fixture(scope="module", params=CASES, ids=[f"{n}-{i}" + ("-tuned" * t) for n, i, t in CASES])
def recorded(request, tmp_path_factory):
    name, index, tuned = request.param
    root, cfg = request.getfixturevalue("finished_tuned" if tuned else "finished")
    stage = stages.STAGES[name]
    job = stage.jobs(cfg)[index]
    out = tmp_path_factory.mktemp("recorded") / "record.json"
    argv = [stage.command, "--config", str(stages.resolved_config_file(cfg)), *stages.argv(stage, cfg, job)]
    result = run([sys.executable, str(RECORDING), str(out), *argv], root)
    record = json.loads(out.read_text())
    assert record["rc"] == 0, f"{argv}\n{result.stderr}"
    return stage, job, cfg, record


def test_a_stage_reads_only_the_keys_it_declares(recorded):
    stage, job, cfg, record = recorded
    values = {path for path in record["keys"] if not isinstance(stages.lookup(cfg, path), dict)}  # not sections
    undeclared = sorted(p for p in values if not covered(p, stage.reads(cfg, job) + list(stage.also_reads)))
    assert not undeclared, f"{stage.name} reads keys the table does not declare: {undeclared}"


def test_a_stage_reads_every_key_it_declares(recorded):
    stage, job, cfg, record = recorded
    unread = [key for key in stage.reads(cfg, job)
              if not any(path == key or path.startswith(key + ".") for path in record["keys"])]
    assert not unread, f"{stage.name} declares keys it never reads: {unread}"


def test_a_stage_runs_only_the_code_it_declares(recorded):
    stage, _, _, record = recorded
    package = (Path(config_mod.__file__).parent).resolve()
    declared = [package.parent.parent / part for part in stages.code_parts(stage)]
    undeclared = sorted(m for m in record["modules"]
                        if not any(Path(m) == d or d in Path(m).parents for d in declared))
    assert not undeclared, f"{stage.name} runs modules the table does not declare: {undeclared}"
