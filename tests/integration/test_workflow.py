"""The Snakemake workflow and the DVC pipeline, planned and run end to end on a tiny config."""
from __future__ import annotations

import hashlib
import os
import re

import pytest
import yaml

from metalr import config as config_mod
from metalr import dvcgen, paths
from metalr.config import REPO_ROOT
from metalr.report.pdf import latex_available
from tests.integration.workflow_helpers import BIN, copy_workflow, edited, job_counts, job_outputs, planned_jobs, run


def test_lint_is_clean():
    result = run(["snakemake", "--lint", "--configfile", "config/quick.yaml"], REPO_ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


@pytest.fixture(scope="module")
def quick_plan(tmp_path_factory):
    """The dry run of the quick config in a fresh copy of the workflow."""
    repo = copy_workflow(tmp_path_factory.mktemp("quick"))
    return run(["snakemake", "-n", "--cores", "1", "--configfile", "config/quick.yaml"], repo).stdout


def test_dry_run_plans_every_job_of_the_quick_grid(quick_plan):
    expected = {"data": 1, "tasks": 2, "train": 12, "evaluate": 12, "report": 1, "fidelity": 1, "cost": 1,
                "analyses": 1, "all": 1}
    if latex_available():
        expected["appendix_pdf"] = 1
    assert job_counts(quick_plan) == expected


def test_no_two_jobs_write_the_same_file(quick_plan):
    """Concurrent jobs never collide: declared outputs and logs, and the undeclared checkpoints."""
    jobs = job_outputs(quick_plan)
    assert len(jobs) == sum(job_counts(quick_plan).values())
    files = [f for job in jobs for f in job]
    assert files and len(files) == len(set(files))
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG, REPO_ROOT / "config" / "quick.yaml"])
    checkpoints = {str(paths.checkpoint_file(cfg, r)) for r in config_mod.grid_runs(cfg)}
    assert len(checkpoints) == 12 and not any(c.startswith(f) or f.startswith(c) for c in checkpoints for f in files)


def test_bad_config_fails_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid:\n  algorithms: [maml, reptil]\n")
    result = run(["snakemake", "-n", "--cores", "1", "--configfile", str(bad)], REPO_ROOT, check=False)
    assert result.returncode != 0
    assert "grid.algorithms[1]: unknown algorithm 'reptil'" in result.stdout + result.stderr


def test_command_line_overrides_are_refused(tmp_path):
    result = run(["snakemake", "-n", "--cores", "1", "--config", "seed=3"], REPO_ROOT, check=False)
    assert result.returncode != 0 and "--config overrides are not passed" in result.stdout + result.stderr


def test_committed_dvc_yaml_is_generated_from_the_quick_config():
    committed = (REPO_ROOT / "dvc.yaml").read_text()
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        assert committed == dvcgen.render(["config/config.yaml", "config/quick.yaml"])
    finally:
        os.chdir(cwd)


def test_committed_dvc_lock_matches_the_current_sources():
    lock = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())
    checked = 0
    for name, stage in lock["stages"].items():
        for dep in stage.get("deps", []):
            path = REPO_ROOT / dep["path"]
            if dep["path"].startswith(("src/", "config/", "paper/")) and path.is_file():
                assert hashlib.md5(path.read_bytes()).hexdigest() == dep["md5"], f"{name}: {dep['path']} changed"
                checked += 1
    assert checked > 0


@pytest.fixture(scope="module")
def tiny_workflow(tmp_path_factory):
    """Copy the workflow into a fresh folder and run the tiny config end to end."""
    root = copy_workflow(tmp_path_factory.mktemp("tiny"))
    result = run(["snakemake", "--cores", "2", "--configfile", "tests/data/tiny.yaml"], root)
    return root, result


def test_tiny_workflow_produces_the_table_and_the_pdf(tiny_workflow):
    root, _ = tiny_workflow
    gen = root / "paper" / "generated" / "tiny"
    table = (gen / "table1.tex").read_text()
    for row in ("ANIL", "ANIL + MLPLR", "MAML", "MAML + MLPLR"):
        assert re.search(rf"^\s*{re.escape(row)}\s*&", table, re.M), row
    assert len(re.findall(r"\d+\.\d\d \$\\pm\$ \d+\.\d\d", table)) == 4
    metrics = list((root / "results" / "tiny" / "metrics").rglob("*.json"))
    assert len(metrics) == 4
    if latex_available():
        assert (gen / "appendix.pdf").read_bytes()[:4] == b"%PDF"
    else:
        assert not (gen / "appendix.pdf").exists()


def test_second_run_does_nothing(tiny_workflow):
    root, _ = tiny_workflow
    assert planned_jobs(root, "--configfile", "tests/data/tiny.yaml") == {}


def with_pdf(jobs: dict[str, int]) -> dict[str, int]:
    return {**jobs, "appendix_pdf": 1} if latex_available() else jobs


def test_editing_a_module_reruns_exactly_its_dependents(tiny_workflow):
    root, _ = tiny_workflow
    with edited(root / "src" / "metalr" / "evaluate" / "stats.py", lambda text: text + "\n# edited\n"):
        jobs = planned_jobs(root, "--configfile", "tests/data/tiny.yaml")
    assert jobs == with_pdf({"evaluate": 4, "report": 1, "all": 1})


@pytest.mark.parametrize("change, expected", [
    (lambda text: text.replace("  tasks: 10", "  tasks: 11"), {"tasks": 1, "evaluate": 4, "report": 1, "all": 1}),
    (lambda text: text + "rules:\n  mlplr:\n    lr_max: 0.9\n", {"train": 2, "evaluate": 2, "report": 1, "all": 1}),
], ids=["evaluate.tasks", "rules.mlplr.lr_max"])
def test_changing_one_config_value_reruns_exactly_its_dependents(tiny_workflow, change, expected):
    root, _ = tiny_workflow
    with edited(root / "tests" / "data" / "tiny.yaml", change):
        jobs = planned_jobs(root, "--configfile", "tests/data/tiny.yaml")
    assert jobs == with_pdf(expected)


def test_editing_a_template_reruns_only_the_report(tiny_workflow):
    root, _ = tiny_workflow
    with edited(root / "paper" / "templates" / "table1.tex.j2", lambda text: text + "\n"):
        jobs = planned_jobs(root, "--configfile", "tests/data/tiny.yaml")
    assert jobs == with_pdf({"report": 1, "all": 1})


@pytest.fixture(scope="module")
def dvc_workflow(tiny_workflow):
    """The tiny workflow's folder as a DVC repository whose lock records what Snakemake made."""
    root, _ = tiny_workflow
    run(["git", "init", "-q"], root)
    run([str(BIN / "metalr"), "dvc-yaml", "--configfile", "tests/data/tiny.yaml"], root)
    run(["dvc", "commit", "-f", "-q"], root)  # record the outputs Snakemake made with the same commands
    return root


def dvc_changed_stages(root) -> set[str]:
    status = run(["dvc", "status"], root).stdout
    if "up to date" in status.lower():
        return set()
    return {line.rstrip(":").strip() for line in status.splitlines()
            if line.endswith(":") and not line.startswith("\t") and not line.strip().startswith("changed")}


def stages(kind: str, runs=("anil_fixed", "anil_mlplr", "maml_fixed", "maml_mlplr")) -> set[str]:
    return {f"{kind}_glyphs_5w1s_{r}_seed1" for r in runs}


def test_dvc_is_up_to_date_after_the_snakemake_run(dvc_workflow):
    assert dvc_changed_stages(dvc_workflow) == set()


def test_dvc_reruns_only_the_stages_of_an_edited_module(dvc_workflow):
    with edited(dvc_workflow / "src" / "metalr" / "algorithms" / "anil.py", lambda text: text + "\n# edited\n"):
        changed = dvc_changed_stages(dvc_workflow)
    assert changed == stages("train") | stages("evaluate")


def test_dvc_reruns_only_the_task_list_and_evaluations_when_evaluate_tasks_changes(dvc_workflow):
    """(The report follows once the evaluations' metrics change: dvc status lists only direct changes.)"""
    with edited(dvc_workflow / "tests" / "data" / "tiny.yaml", lambda text: text.replace("  tasks: 10", "  tasks: 11")):
        changed = dvc_changed_stages(dvc_workflow)
    assert changed == {"tasks_glyphs_5w1s"} | stages("evaluate")


def test_dvc_ignores_a_touched_data_file_with_unchanged_content(dvc_workflow):
    files = {path: path.stat() for path in (dvc_workflow / "data" / "glyphs").iterdir()}
    try:
        for path in files:
            os.utime(path)
        assert dvc_changed_stages(dvc_workflow) == set()
    finally:  # Snakemake, unlike DVC, goes by timestamps: leave them as they were
        for path, stat in files.items():
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.parametrize("profile,train_resources", [
    ("slurm", {"gpu": "1", "runtime": "1440", "slurm_partition": "gpu"}),
    ("local-gpu", {"gpu": "1"}),
])
def test_profiles_plan_the_grid_with_gpu_requests(profile, train_resources):
    out = run(["snakemake", "-n", "--configfile", "config/quick.yaml", "--workflow-profile",
               f"workflow/profiles/{profile}"], REPO_ROOT).stdout
    blocks = out.split("\nrule ")[1:] + out.split("\nlocalrule ")[1:]
    train = [b for b in blocks if b.startswith("train:")]
    assert len(train) == 12
    for block in train:
        resources = dict(item.split("=", 1) for item in re.search(r"resources: (.*)", block).group(1).split(", "))
        for key, value in train_resources.items():
            assert resources.get(key) == value, (key, resources)


@pytest.mark.parametrize("configfile, experiment, trains", [("config/extended.yaml", "extended", 84),
                                                            ("config/extended_quick.yaml", "extended_quick", 42)])
def test_extended_grids_validate_and_plan_every_rule_with_the_maml_family(tmp_path, configfile, experiment, trains):
    from metalr.algorithms import ALGORITHMS
    from metalr.steprules import RULES

    cfg = config_mod.load([config_mod.DEFAULT_CONFIG, REPO_ROOT / configfile])
    assert cfg["experiment"] == experiment and set(cfg["grid"]["rules"]) == set(RULES)
    assert set(cfg["grid"]["algorithms"]) == {a for a, alg in ALGORITHMS.items() if alg.trains_rule_meta}
    assert len(config_mod.grid_runs(cfg)) == trains
    repo = copy_workflow(tmp_path)
    jobs = planned_jobs(repo, "--configfile", configfile)
    assert jobs["train"] == jobs["evaluate"] == trains
    assert jobs["fidelity"] == jobs["cost"] == jobs["analyses"] == 1
