"""Snakemake killed mid-job: the next run knows what is unfinished and rebuilds only that."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.workflow_helpers import ENV, SNAKEMAKE, copy_workflow, job_counts, run

pytestmark = pytest.mark.slow

DATA = {"glyphs": {"instances_per_class": 5, "image_size": 16}}  # a quick data stage
TRAIN = {"iterations": 24, "inner_steps": 1, "task_batch": 2, "queries": 2, "log_every": 4, "checkpoint_every": 2}


def write_config(root: Path, experiment: str, algorithms: list[str]) -> tuple[list[str], list[str]]:
    """A config training ``algorithms`` x fixed; returns (config args, the runs' model files as targets).
    The data settings are the same in every one, so the dataset is built once for all of them."""
    cfg = {"experiment": experiment, "data": DATA, "model": {"filters": 4}, "train": TRAIN,
           "grid": {"algorithms": algorithms, "rules": ["fixed"], "shots": [1]},
           "evaluate": {"tasks": 10, "inner_steps": 1, "queries": 3}}
    (root / "tests" / "data" / "interrupt.yaml").write_text(yaml.safe_dump(cfg))
    return (["--configfile", "tests/data/interrupt.yaml"],
            [f"results/{experiment}/models/glyphs/5w1s/{a}/fixed/seed1/model.pt" for a in algorithms])


def checkpoint(root: Path, experiment: str, algorithm: str) -> Path:
    return root / f"work/{experiment}/checkpoints/glyphs/5w1s/{algorithm}/fixed/seed1.pt"


def start(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([SNAKEMAKE, "--cores", "1", *args], cwd=root, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for(condition, proc: subprocess.Popen | None = None, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A copied workflow whose dataset is already built."""
    root = copy_workflow(tmp_path_factory.mktemp("interrupted"))
    args, _ = write_config(root, "data_only", ["anil"])
    run([SNAKEMAKE, "--cores", "1", *args, "--", "data/glyphs/manifest.json"], root)
    return root


def test_group_killed_mid_job_reruns_only_that_job_and_resumes(root):
    args, targets = write_config(root, "killed", ["anil", "maml"])
    algorithms = dict(zip(targets, ["anil", "maml"]))
    proc = start(root, *args, "--", *targets)

    def one_done_other_checkpointed():  # one core: the runs train one after the other, in either order
        return any((root / a).exists() and checkpoint(root, "killed", algorithms[b]).exists()
                   for a, b in (targets, targets[::-1]))
    wait_for(one_done_other_checkpointed, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    done, killed = targets if (root / targets[0]).exists() else targets[::-1]
    assert not (root / killed).exists()  # atomic outputs: nothing half-written for Snakemake to trust
    finished = (root / done).stat().st_mtime_ns

    plan = run([SNAKEMAKE, "-n", "--cores", "1", *args, "--", *targets], root).stdout
    assert job_counts(plan) == {"train": 1} and f"reason: Missing output files: {killed}" in plan
    refused = run([SNAKEMAKE, "--cores", "1", *args, "--", *targets], root, check=False)
    assert refused.returncode != 0 and "--unlock" in refused.stdout + refused.stderr  # the kill left its lock

    run([SNAKEMAKE, "--unlock", *args], root)
    rerun = run([SNAKEMAKE, "--cores", "1", *args, "--", *targets], root)
    assert job_counts(rerun.stderr) == {"train": 1}
    log = (root / f"logs/killed/train/glyphs/5w1s/{algorithms[killed]}/fixed/seed1.log").read_text()
    assert f"{algorithms[killed]}/fixed/seed1: resuming from work/killed/checkpoints/" in log
    assert (root / killed).exists() and (root / done).stat().st_mtime_ns == finished
    assert not checkpoint(root, "killed", algorithms[killed]).exists()


def test_driver_killed_after_its_job_wrote_the_outputs_reports_them_incomplete(root):
    """A job that outlives its Snakemake (a killed driver, a lost node) writes outputs Snakemake never
    confirmed: the next run names them, and --rerun-incomplete rebuilds just that job."""
    args, (target,) = write_config(root, "orphan", ["anil"])
    log = root / "logs/orphan/train/glyphs/5w1s/anil/fixed/seed1.log"
    proc = start(root, *args, "--", target)
    wait_for(lambda: checkpoint(root, "orphan", "anil").exists(), proc)
    os.kill(proc.pid, signal.SIGKILL)  # the driver only: its train job runs on
    proc.communicate()
    wait_for(lambda: log.exists() and "final query accuracy" in log.read_text())

    reported = run([SNAKEMAKE, "-n", "--cores", "1", *args, "--", target], root, check=False)
    text = reported.stdout + reported.stderr
    assert reported.returncode != 0 and "IncompleteFilesException" in text and target in text
    run([SNAKEMAKE, "--unlock", *args], root)
    rebuilt = run([SNAKEMAKE, "--cores", "1", "--rerun-incomplete", *args, "--", target], root)
    assert job_counts(rebuilt.stderr) == {"train": 1}
