"""The Snakemake workflow and the DVC pipeline, planned and run end to end on a tiny config."""
from __future__ import annotations

import hashlib
import os
import re
import shutil

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
                "analyses": 1, "scaling": 1, "scaling_figure": 1, "all": 1}
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
    """Sources only: a file some stage makes (paper/generated/...) is whatever the last local run wrote."""
    lock = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())
    made = tuple(out["path"] for stage in lock["stages"].values() for out in stage.get("outs", []))
    checked = 0
    for name, stage in lock["stages"].items():
        for dep in stage.get("deps", []):
            path = REPO_ROOT / dep["path"]
            if dep["path"].startswith(made):
                continue
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
    table = (gen / "tables.tex").read_text()
    for row in ("ANIL", "ANIL + MLPLR", "MAML", "MAML + MLPLR"):
        assert re.search(rf"^\s*{re.escape(row)}\s*&", table, re.M), row
    assert len(re.findall(r"\d+\.\d\d \$\\pm\$ \d+\.\d\d", table)) == 4
    metrics = list((root / "results" / "tiny" / "metrics").rglob("*.json"))
    assert len(metrics) == 4
    if latex_available():
        assert (gen / "appendix.pdf").read_bytes()[:4] == b"%PDF"
    else:
        assert not (gen / "appendix.pdf").exists()


def test_html_report_holds_the_figures_and_tables(tiny_workflow, tmp_path):
    """`snakemake --report` on the finished workflow: one self-contained file with every captioned output."""
    root, _ = tiny_workflow
    html = tmp_path / "report.html"
    run(["snakemake", "--report", str(html), "--configfile", "tests/data/tiny.yaml"], root)
    text = html.read_text(errors="replace")
    for name in ("ways.pdf", "cross_domain.pdf", "lambda.png", "training.pdf", "summary.csv", "paired.csv"):
        assert name in text, name


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
    (lambda text: text + "rules:\n  mlplr:\n    lr_max: 0.9\n",  # the analyses draw the MLPLR runs' step sizes
     {"train": 2, "evaluate": 2, "report": 1, "analyses": 1, "all": 1}),
], ids=["evaluate.tasks", "rules.mlplr.lr_max"])
def test_changing_one_config_value_reruns_exactly_its_dependents(tiny_workflow, change, expected):
    root, _ = tiny_workflow
    with edited(root / "tests" / "data" / "tiny.yaml", change):
        jobs = planned_jobs(root, "--configfile", "tests/data/tiny.yaml")
    assert jobs == with_pdf(expected)


def test_editing_a_template_reruns_only_the_report(tiny_workflow):
    root, _ = tiny_workflow
    with edited(root / "paper" / "templates" / "accuracy_tables.tex.j2", lambda text: text + "\n"):
        jobs = planned_jobs(root, "--configfile", "tests/data/tiny.yaml")
    assert jobs == with_pdf({"report": 1, "all": 1})


@pytest.fixture(scope="module")
def dvc_workflow(tiny_workflow):
    """The tiny workflow's folder as a DVC repository whose lock records what Snakemake made."""
    if not latex_available():  # dvc.yaml always has the appendix_pdf stage, so `dvc commit` needs the PDF
        pytest.skip("latexmk/pdflatex not installed: the DVC pipeline's appendix_pdf stage has no PDF to record")
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
    assert changed == stages("train") | stages("evaluate") | {"fidelity", "cost", "scaling"}  # all run ANIL's code


def test_dvc_reruns_only_the_task_list_and_evaluations_when_evaluate_tasks_changes(dvc_workflow):
    """(The report depends on the config files themselves, for its choices ledger.)"""
    with edited(dvc_workflow / "tests" / "data" / "tiny.yaml", lambda text: text.replace("  tasks: 10", "  tasks: 11")):
        changed = dvc_changed_stages(dvc_workflow)
    assert changed == {"tasks_glyphs_5w1s", "report"} | stages("evaluate")


def ran_stages(root, *args: str) -> set[str]:
    result = run(["dvc", "repro", *args], root)
    return set(re.findall(r"Running stage '([^']+)'", result.stdout + result.stderr))


def test_dvc_repro_of_one_cell_runs_that_cell_only(dvc_workflow):
    """A deleted cell comes back from the DVC cache without running; a forced cell reruns alone, and
    since training is deterministic its model keeps its bytes, so nothing downstream reruns."""
    cell = "train_glyphs_5w1s_maml_mlplr_seed1"
    model_dir = dvc_workflow / "results" / "tiny" / "models" / "glyphs" / "5w1s" / "maml" / "mlplr" / "seed1"
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    shutil.rmtree(model_dir)
    assert ran_stages(dvc_workflow) == set()
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before
    assert ran_stages(dvc_workflow, "--force", "--single-item", cell) == {cell}
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before
    assert ran_stages(dvc_workflow) == set() and dvc_changed_stages(dvc_workflow) == set()


def test_dvc_metrics_and_plots_read_the_results(dvc_workflow):
    metrics = run(["dvc", "metrics", "show", "--json"], dvc_workflow).stdout
    for algorithm, rule in (("maml", "mlplr"), ("anil", "fixed")):
        assert f"results/tiny/metrics/glyphs/5w1s/{algorithm}/{rule}/seed1.json" in metrics
    assert '"accuracy"' in metrics
    plots = run(["dvc", "plots", "show", "--json"], dvc_workflow).stdout
    assert "paper/generated/tiny/summary.csv" in plots and "accuracy_mean" in plots


def test_dvc_ignores_a_touched_data_file_with_unchanged_content(dvc_workflow):
    files = {path: path.stat() for path in (dvc_workflow / "data" / "glyphs").iterdir()}
    try:
        for path in files:
            os.utime(path)
        assert dvc_changed_stages(dvc_workflow) == set()
    finally:  # Snakemake, unlike DVC, goes by timestamps: leave them as they were
        for path, stat in files.items():
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def planned_blocks(out: str, rule: str) -> list[dict[str, str]]:
    """The resources of every planned job of ``rule`` in a dry run's output."""
    blocks = out.split("\nrule ")[1:] + out.split("\nlocalrule ")[1:]
    return [dict(item.split("=", 1) for item in re.search(r"resources: (.*)", b).group(1).split(", "))
            for b in blocks if b.startswith(f"{rule}:")]


@pytest.mark.parametrize("profile,train_resources", [
    ("slurm", {"gpu": "1", "runtime": "1440", "slurm_partition": "gpu"}),
    ("local-gpu", {"gpu": "1"}),
])
def test_profiles_plan_the_grid_with_gpu_requests(profile, train_resources, tmp_path):
    repo = copy_workflow(tmp_path)  # a fresh copy: results in the repository would leave nothing to plan
    out = run(["snakemake", "-n", "--configfile", "config/quick.yaml", "--workflow-profile",
               f"workflow/profiles/{profile}"], repo).stdout
    train = planned_blocks(out, "train")
    assert len(train) == 12
    for resources in train:
        for key, value in train_resources.items():
            assert resources.get(key) == value, (key, resources)


# The paper's grid (config/paper.yaml): Tables 1-2 = 5 datasets x 2 shots x 6 methods; Figure 3 adds
# CIFAR-FS at 10/15/20 ways x 2 shots x 6 methods; Table 3 = 6 miniImageNet 5-shot models x 3 test sets.
PAPER_JOBS = {"data": 5, "tasks": 5 * 2 + 3 * 2, "train": 60 + 36, "evaluate": 96, "evaluate_cross_domain": 18}


@pytest.mark.parametrize("profile", ["slurm", "local-gpu"])
def test_profiles_plan_the_whole_paper_grid_with_a_gpu_per_training_and_evaluation_job(profile, tmp_path):
    repo = copy_workflow(tmp_path)
    out = run(["snakemake", "-n", "--configfile", "config/paper.yaml", "--workflow-profile",
               f"workflow/profiles/{profile}"], repo).stdout
    counts = job_counts(out)
    assert {rule: counts.get(rule) for rule in PAPER_JOBS} == PAPER_JOBS
    for rule in ("train", "evaluate", "evaluate_cross_domain"):
        jobs = planned_blocks(out, rule)
        assert len(jobs) == PAPER_JOBS[rule] and all(job.get("gpu") == "1" for job in jobs), rule
    assert all(job.get("gpu", "0") == "0" for job in planned_blocks(out, "data") + planned_blocks(out, "tasks"))


@pytest.mark.parametrize("configfiles, experiment, trains", [
    (["config/extended.yaml"], "extended", 84 + 32),
    (["config/quick.yaml", "config/extended_quick.yaml"], "extended_quick", 42 + 16),
])
def test_extended_grids_validate_and_plan_every_valid_algorithm_and_rule(tmp_path, configfiles, experiment, trains):
    from metalr.algorithms import ALGORITHMS
    from metalr.steprules import RULES

    cfg = config_mod.load([config_mod.DEFAULT_CONFIG, *(REPO_ROOT / f for f in configfiles)])
    runs = config_mod.grid_runs(cfg)
    assert cfg["experiment"] == experiment and {r.rule for r in runs} == set(RULES)
    assert {r.algorithm for r in runs} == set(ALGORITHMS)
    valid = {(a, r) for a, alg in ALGORITHMS.items() for r, rule in RULES.items()
             if alg.flag("trains_rule_meta") or not rule.flag("learned")}
    assert {(r.algorithm, r.rule) for r in runs} == valid  # every pair validation accepts, no other
    assert len(runs) == trains
    repo = copy_workflow(tmp_path)
    jobs = planned_jobs(repo, "--configfile", *configfiles)
    assert jobs["train"] == jobs["evaluate"] == trains
    assert jobs["fidelity"] == jobs["cost"] == jobs["analyses"] == 1
