"""The tiny workflow through a real one-node SLURM cluster, with the project's workflow/profiles/slurm.

The dry runs of the profile (test_workflow.py) cannot see what only submission shows: a job asking
more CPUs than the node has, a rule whose threads need a total core count the cluster executor does
not have, jobs that cannot find the package. Here every job is an sbatch job that runs, and the
cluster's accounting says what each asked for.
"""
from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter

import pytest
import yaml

from metalr.config import REPO_ROOT
from metalr.report.pdf import latex_available
from tests.integration import slurm_cluster
from tests.integration.workflow_helpers import ENV, copy_workflow, job_counts

pytestmark = pytest.mark.slow

PROFILE = REPO_ROOT / "workflow" / "profiles" / "slurm" / "config.yaml"
RUN_TIMEOUT_S = 20 * 60


def profile_gpu_rules() -> set[str]:
    """The rules the profile gives a GPU."""
    profile = yaml.safe_load(PROFILE.read_text())
    return {rule for rule, resources in profile["set-resources"].items() if resources.get("gpu")}


def rule_of(job: dict[str, str]) -> str:
    """The rule of a SLURM job, from the comment the plugin gives it (rule_<name>_wildcards_<values>)."""
    return re.match(r"rule_(\w+?)(_wildcards_|$)", job["Comment"]).group(1)


def tres(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(",") if item)


@pytest.fixture(scope="module")
def cluster():
    reason = slurm_cluster.unavailable_reason()
    if reason:
        pytest.skip(reason)
    partition = yaml.safe_load(PROFILE.read_text())["default-resources"]["slurm_partition"]
    # Two CPUs: smaller than most GPU nodes, so a profile that asks more per job is refused here.
    with slurm_cluster.one_node_cluster(partition, cpus=2, gpus=2) as started:
        yield started


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """The tiny workflow run with the SLURM profile; returns Snakemake's output and the accounting."""
    repo = copy_workflow(tmp_path_factory.mktemp("slurm"))
    env = cluster.environment(ENV)  # the workflow tests' environment: jobs get it too (sbatch --export=ALL)
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", "workflow/profiles/slurm",
           "--configfile", "tests/data/tiny.yaml",
           "--slurm-init-seconds-before-status-checks", "2"]  # the default first wait is 40 s
    try:
        result = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the SLURM run did not finish in {RUN_TIMEOUT_S} s:\n{exc.stderr}\n{cluster.log_tails()}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{output[-6000:]}\n{cluster.log_tails()}"
    accounted = cluster.jobs()
    print("\n".join(" ".join(job.values()) for job in accounted))  # shown with pytest -rP
    return repo, output, accounted


def test_every_planned_job_is_submitted_run_and_seen_to_finish(slurm_run):
    repo, output, accounted = slurm_run
    planned = job_counts(output)
    expected = {"data": 1, "tasks": 1, "train": 4, "evaluate": 4, "fidelity": 1, "cost": 1, "scaling": 1,
                "scaling_figure": 1, "analyses": 1, "report": 1, "all": 1}
    if latex_available():
        expected["appendix_pdf"] = 1
    assert planned == expected
    submitted = dict(re.findall(r"^Job (\d+) has been submitted with SLURM jobid (\d+)", output, re.M))
    finished = Counter(re.findall(r"^Finished jobid: \d+ \(Rule: (\w+)\)", output, re.M))
    assert finished == planned  # Snakemake saw each job end, through sacct
    assert len(submitted) == sum(planned.values()) - 1  # every job but the local target `all`
    run_id = re.search(r"SLURM run ID: (\S+)", output).group(1)
    assert {job["JobID"] for job in accounted} == set(submitted.values())
    for job in accounted:
        assert (job["JobName"], job["State"], job["ExitCode"]) == (run_id, "COMPLETED", "0:0"), job
    assert Counter(rule_of(job) for job in accounted) == {rule: n for rule, n in planned.items() if rule != "all"}
    assert len(list((repo / "results" / "tiny" / "metrics").rglob("*.json"))) == 4
    assert (repo / "paper" / "generated" / "tiny" / "tables.tex").is_file()


def test_training_and_evaluation_jobs_got_a_gpu_as_the_profile_declares_and_no_other_job_did(slurm_run):
    _, _, accounted = slurm_run
    gpu_rules = profile_gpu_rules()
    assert {"train", "evaluate"} <= gpu_rules
    gpu_jobs = Counter()
    for job in accounted:
        if rule_of(job) in gpu_rules:
            assert tres(job["ReqTRES"]).get("gres/gpu") == tres(job["AllocTRES"]).get("gres/gpu") == "1", job
            gpu_jobs[rule_of(job)] += 1
        else:
            assert "gres/gpu" not in tres(job["ReqTRES"]), job
    assert gpu_jobs == {"train": 4, "evaluate": 4}


def test_timing_jobs_had_the_node_to_themselves(slurm_run, cluster):
    """Locally a timing job reserves every core; under SLURM it asks one CPU and the profile's
    --exclusive gives it the node: every CPU allocated, and no other job ran while it did."""
    _, _, accounted = slurm_run
    timing = [job for job in accounted if rule_of(job) in {"cost", "scaling"}]
    assert len(timing) == 2
    for job in timing:
        assert tres(job["AllocTRES"])["cpu"] == str(cluster.cpus), job
        beside = [other["JobID"] for other in accounted if other is not job
                  and other["Start"] < job["End"] and other["End"] > job["Start"]]  # ISO times sort as text
        assert beside == [], (job, beside)


def test_a_machine_without_slurm_skips_naming_the_packages(monkeypatch):
    monkeypatch.setattr(slurm_cluster, "SEARCH_PATH", "/nonexistent")
    reason = slurm_cluster.unavailable_reason()
    assert reason.startswith("SLURM is not installed (munged, mariadb-install-db, mariadbd, slurmdbd, slurmctld")
    assert ("apt-get install --no-install-recommends slurmctld slurmd slurm-client slurmdbd munge "
            "mariadb-server-core") in reason
