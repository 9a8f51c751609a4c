"""The Snakemake workflow and the DVC pipeline, planned and run end to end on a tiny config.

Both tools rerun a job when, and only when, a resolved value it reads changes (wherever it was set), its
code or an input changes; renaming or moving a config file reruns nothing; after Snakemake, DVC has
nothing to rerun."""
from __future__ import annotations

import hashlib
import os
import re
import shutil

import pytest
import yaml

from metalr import config as config_mod
from metalr import dvcgen, stages
from metalr.config import REPO_ROOT
from metalr.report.pdf import latex_available
from tests.integration.conftest import TINY, TINY_FILES
from tests.integration.workflow_helpers import (SNAKEMAKE, copy_workflow, dry_run, dvc, dvc_changed, dvc_downstream,
                                                dvc_repro, edited, job_counts, job_outputs, metalr, params_changed,
                                                planned_jobs, run)


def test_lint_is_clean(tmp_path):
    repo = copy_workflow(tmp_path)
    result = run([SNAKEMAKE, "--lint", "--configfile", "config/quick.yaml"], repo, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


@pytest.fixture(scope="module")
def quick_plan(tmp_path_factory):
    """The dry run of the quick config in a fresh copy of the workflow."""
    repo = copy_workflow(tmp_path_factory.mktemp("quick"))
    return dry_run(repo, "--configfile", "config/quick.yaml")


def test_dry_run_plans_every_job_of_the_quick_grid(quick_plan):
    expected = {"data": 1, "tasks": 2, "train": 12, "evaluate": 12, "report": 1, "fidelity": 1, "cost": 1,
                "analyses": 1, "scaling": 1, "scaling_figure": 1, "all": 1}
    if latex_available():
        expected["appendix_pdf"] = 1
    assert job_counts(quick_plan) == expected


def test_no_two_jobs_write_the_same_file(quick_plan):
    jobs = job_outputs(quick_plan)
    assert len(jobs) == sum(job_counts(quick_plan).values())
    files = [f for job in jobs for f in job]
    assert files and len(files) == len(set(files))


def test_bad_config_fails_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid:\n  algorithms: [maml, reptil]\n")
    result = run([SNAKEMAKE, "-n", "--cores", "1", "--configfile", str(bad)], copy_workflow(tmp_path / "repo"),
                 check=False)
    assert result.returncode != 0
    assert "grid.algorithms[1]: unknown algorithm 'reptil'" in result.stdout + result.stderr


def test_command_line_overrides_are_refused(tmp_path):
    result = run([SNAKEMAKE, "-n", "--cores", "1", "--config", "seed=3"], copy_workflow(tmp_path), check=False)
    assert result.returncode != 0 and "--config overrides are not passed" in result.stdout + result.stderr


def test_committed_dvc_yaml_is_generated_from_the_quick_config():
    committed = (REPO_ROOT / "dvc.yaml").read_text()
    assert committed == dvcgen.render(["config/config.yaml", "config/quick.yaml"], REPO_ROOT)


def test_committed_dvc_lock_is_of_the_committed_dvc_yaml():
    """dvc.lock records the quick run of the stages dvc.yaml declares, with their commands."""
    lock = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())["stages"]
    declared = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    assert set(lock) == set(declared)
    assert {name: stage["cmd"] for name, stage in lock.items()} == {n: s["cmd"] for n, s in declared.items()}


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


# ------------------------------------------------------------------------------------- the tiny run
def test_tiny_workflow_produces_the_table_and_the_pdf(tiny):
    root, _ = tiny
    gen = root / "paper" / "generated" / "tiny"
    table = (gen / "tables.tex").read_text()
    for row in ("ANIL", "ANIL + MLPLR", "MAML", "MAML + MLPLR"):
        assert re.search(rf"^\s*{re.escape(row)}\s*&", table, re.M), row
    assert len(re.findall(r"\d+\.\d\d \$\\pm\$ \d+\.\d\d", table)) == 4
    assert len(list((root / "results" / "tiny" / "metrics").rglob("*.json"))) == 4
    assert (gen / "appendix.pdf").exists() == latex_available()
    if latex_available():
        assert (gen / "appendix.pdf").read_bytes()[:4] == b"%PDF"


def test_jobs_read_the_resolved_config_and_run_on_snakemakes_interpreter(tiny):
    """No job was given a config file path; each ran `python -m metalr` on the interpreter that ran Snakemake
    (neither it nor `metalr` is on the tests' PATH: a job that looked there would have failed)."""
    root, result = tiny
    log = result.stdout + result.stderr
    commands = re.findall(r'^Shell command: ("\$METALR_PYTHON" -m metalr .*)$', log, re.M)
    assert len(commands) == sum(job_counts(log).values()) - 1  # every job but `all`
    assert all("--configfile" not in c and "--config results/tiny/config.yaml" in c for c in commands)
    resolved = root / "results" / "tiny" / "config.yaml"
    files = [root / "config" / "config.yaml"] + [root / f for f in TINY_FILES]
    assert config_mod.load([resolved]) == config_mod.load(files)


def test_html_report_holds_the_figures_and_tables(tiny, tmp_path):
    """`snakemake --report` on the finished workflow: one self-contained file with every captioned output."""
    root, _ = tiny
    html = tmp_path / "report.html"
    run([SNAKEMAKE, "--report", str(html), *TINY], root)
    text = html.read_text(errors="replace")
    for name in ("ways.pdf", "cross_domain.pdf", "lambda.png", "training.pdf", "summary.csv", "paired.csv"):
        assert name in text, name


def test_second_run_does_nothing_in_either_tool(tiny):
    root, result = tiny
    assert "recorded" in result.stderr and "in dvc.lock" in result.stderr  # the handover to DVC
    assert planned_jobs(root, *TINY) == {}
    assert dvc_changed(root) == set()
    assert dvc_repro(root) == set()


def test_editing_a_module_reruns_exactly_its_dependents(tiny):
    root, _ = tiny
    # the evaluations and every stage that draws with the report's statistics
    with edited(root / "src" / "metalr" / "evaluate" / "stats.py", lambda text: text + "\n# edited\n"):
        assert planned_jobs(root, *TINY) == with_pdf({"evaluate": 4, "report": 1, "analyses": 1, "scaling_figure": 1,
                                                      "all": 1})
        assert dvc_changed(root) == stages_of("evaluate") | {"report", "analyses", "scaling_figure"} | pdf_stage()
    with edited(root / "src" / "metalr" / "algorithms" / "anil.py", lambda text: text + "\n# edited\n"):
        changed = dvc_changed(root)
    # the stages that run the algorithms (ANIL's module among them), and the config stage, which reads the
    # plug-ins' SPECs (its output is unchanged, so nothing else reruns for it)
    assert changed == stages_of("train") | stages_of("evaluate") | {"fidelity", "cost", "scaling", "resolved_config"}


def test_editing_a_template_reruns_only_the_report(tiny):
    root, _ = tiny
    with edited(root / "paper" / "templates" / "accuracy_tables.tex.j2", lambda text: text + "\n"):
        assert planned_jobs(root, *TINY) == with_pdf({"report": 1, "all": 1})
        assert dvc_changed(root) == {"report"}


def stages_of(kind: str, runs=("anil_fixed", "anil_mlplr", "maml_fixed", "maml_mlplr")) -> set[str]:
    return {f"{kind}_glyphs_5w1s_{r}_seed1" for r in runs}


def with_pdf(jobs: dict[str, int]) -> dict[str, int]:
    return {**jobs, "appendix_pdf": 1} if latex_available() else jobs


def pdf_stage() -> set[str]:
    return {"appendix_pdf"} if latex_available() else set()


FIXED, MLPLR = ("anil_fixed", "maml_fixed"), ("anil_mlplr", "maml_mlplr")
# A value set in a layered config file (written into the empty layer over tiny.yaml, or a key removed from
# tiny.yaml): the jobs whose own identity changes, in both tools. Every value and its source are in the
# choices ledger, so the report is always among them.
CHANGES = [
    ("data.glyphs.seed", "data:\n  glyphs:\n    seed: 2\n", {"data_glyphs"}),
    ("evaluate.tasks", "evaluate:\n  tasks: 11\n", {"tasks_glyphs_5w1s"}),
    ("evaluate.inner_steps", "evaluate:\n  inner_steps: 3\n", stages_of("evaluate")),
    ("rules.fixed.lr", "rules:\n  fixed:\n    lr: 0.2\n",
     stages_of("train", FIXED) | stages_of("evaluate", FIXED) | {"fidelity", "scaling"}),
    ("rules.mlplr.lr_max", "rules:\n  mlplr:\n    lr_max: 0.9\n",
     stages_of("train", MLPLR) | stages_of("evaluate", MLPLR)),
    ("algorithms.imaml.cg_steps", "algorithms:\n  imaml:\n    cg_steps: 4\n", {"fidelity", "scaling"}),
    ("compute.cpu_allocator", "compute:\n  cpu_allocator: system\n", {"cost", "scaling"}),
    ("analysis.fidelity.inner_steps", "analysis:\n  fidelity:\n    inner_steps: [1, 3]\n", {"fidelity"}),
    ("removed model.filters", None, stages_of("train") | stages_of("evaluate") | {"fidelity"}),
    ("a value equal to its default", "train:\n  task_batch: 4\n", set()),  # only where it is set: the ledger
    ("a source tag", "seed: 1  # [quick] a tag\n", set()),
]


@pytest.mark.parametrize("what, appended, expected", CHANGES, ids=[c[0] for c in CHANGES])
def test_changing_one_config_value_reruns_exactly_the_jobs_that_read_it(tiny, what, appended, expected):
    root, _ = tiny
    expected = expected | {"report"}
    if appended is None:  # tiny.yaml sets it: the default comes back
        path, change = root / "tests" / "data" / "tiny.yaml", lambda text: text.replace("model:\n  filters: 4\n", "")
    else:
        path, change = root / "tests" / "data" / "tiny-layer.yaml", lambda text: text + appended
    with edited(path, change):
        plan = dry_run(root, *TINY)
        # Snakemake plans them and everything downstream; it names a changed param for each job it reached
        # first (a job downstream of another planned one is planned for that reason instead)
        assert job_counts(plan) == {**rules_of(dvc_downstream(root, expected)), "all": 1}, plan
        assert set(params_changed(plan)) <= set(rules_of(expected))
        assert dvc_repro(root, "resolved_config") == {"resolved_config"}
        assert dvc_changed(root) == expected
    assert dvc_repro(root, "resolved_config") == {"resolved_config"} and dvc_changed(root) == set()  # as it was
    assert planned_jobs(root, *TINY) == {}


def rules_of(dvc_stages: set[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in dvc_stages:
        rule = next(s for s in sorted(stages.STAGES, key=len, reverse=True) if name == s or name.startswith(s + "_"))
        counts[rule] = counts.get(rule, 0) + 1
    return counts


def test_a_changed_value_reruns_its_jobs_and_what_depends_on_them(tiny):
    """The whole chain, run: evaluate.tasks reruns the task list, then the evaluations that read it, then the
    report; in DVC too (the lock then records the new values, so the change is undone the same way)."""
    root, _ = tiny
    layer = root / "tests" / "data" / "tiny-layer.yaml"
    chain = {"tasks": 1, "evaluate": 4, "report": 1, "all": 1}
    ran = {"resolved_config", "tasks_glyphs_5w1s", "report"} | stages_of("evaluate") | pdf_stage()
    with edited(layer, lambda text: text + "evaluate:\n  tasks: 11\n"):
        assert planned_jobs(root, *TINY) == with_pdf(chain)
        assert dvc_repro(root) == ran
        assert dvc_repro(root) == set()
    assert dvc_repro(root) == ran


@pytest.mark.parametrize("where", ["renamed.yaml", "élsewhere dir/tiny copy.yaml"])
def test_renaming_or_moving_a_config_file_reruns_nothing(tiny, where):
    root, _ = tiny
    moved = root / where
    moved.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / "tests" / "data" / "tiny.yaml", moved)
    files = [where, *TINY_FILES[1:]]
    assert planned_jobs(root, "--configfile", *files) == {}
    dvc_yaml = (root / "dvc.yaml").read_text()
    resolved = (root / "results" / "tiny" / "config.yaml").read_bytes()
    try:  # dvc.yaml names the config files: regenerated, only the config stage runs, and writes the same bytes
        metalr(root, "dvc-yaml", *[arg for path in files for arg in ("--configfile", path)])
        assert dvc_repro(root) == {"resolved_config"}
        assert (root / "results" / "tiny" / "config.yaml").read_bytes() == resolved
    finally:
        (root / "dvc.yaml").write_text(dvc_yaml)
        moved.unlink()
    assert dvc_repro(root) == {"resolved_config"} and dvc_changed(root) == set()


def test_dvc_repro_of_one_cell_runs_that_cell_only(tiny):
    """A deleted cell comes back from the DVC cache without running; a forced cell reruns alone, and
    since training is deterministic its model keeps its bytes, so nothing downstream reruns."""
    root, _ = tiny
    cell = "train_glyphs_5w1s_maml_mlplr_seed1"
    model_dir = root / "results" / "tiny" / "models" / "glyphs" / "5w1s" / "maml" / "mlplr" / "seed1"
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    stamps = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()}
    shutil.rmtree(model_dir)
    assert dvc_repro(root, restored=False) == set()
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before
    assert dvc_repro(root, "--force", "--single-item", cell) == {cell}
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before
    assert dvc_repro(root) == set() and dvc_changed(root) == set()
    for path in model_dir.iterdir():  # Snakemake, unlike DVC, goes by timestamps: leave them as they were
        os.utime(path, ns=(stamps[path.name], stamps[path.name]))


def test_dvc_metrics_and_plots_read_the_summary_and_the_curves(tiny):
    root, _ = tiny
    metrics = dvc(root, "metrics", "show", "--json").stdout
    assert "paper/generated/tiny/metrics.json" in metrics
    for run_id in ("glyphs/5w1s/maml/mlplr/seed1", "glyphs/5w1s/anil/fixed/seed1"):
        assert run_id in metrics
    plots = dvc(root, "plots", "show", "--json").stdout
    for title in ("training query loss", "training query accuracy", "evaluation step sizes"):
        assert title in plots
    assert "glyphs/5w1s/maml/fixed/seed1" in plots


def test_dvc_metrics_diff_and_plots_diff_between_commits(tiny, tmp_path):
    """In a copy: commit the run, change a value, reproduce, and compare with the commit."""
    root = tmp_path / "copy"
    shutil.copytree(tiny[0], root, symlinks=True)
    run(["git", "add", "dvc.yaml", "dvc.lock", "tests/data", "config"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny run"], root)
    with edited(root / "tests" / "data" / "tiny-layer.yaml", lambda text: text + "evaluate:\n  inner_steps: 1\n"):
        assert stages_of("evaluate") <= dvc_repro(root)
        diff = dvc(root, "metrics", "diff", "HEAD", "--json").stdout
        assert "paper/generated/tiny/metrics.json" in diff and "glyphs/5w1s/maml/fixed/seed1" in diff
        plots = dvc(root, "plots", "diff", "HEAD", "--json").stdout
        assert "evaluation step sizes" in plots and '"HEAD"' in plots and '"workspace"' in plots


def test_dvc_ignores_a_touched_data_file_with_unchanged_content(tiny):
    root, _ = tiny
    files = {path: path.stat() for path in (root / "data" / "glyphs").iterdir()}
    try:
        for path in files:
            os.utime(path)
        assert dvc_changed(root) == set()
    finally:  # Snakemake, unlike DVC, goes by timestamps: leave them as they were
        for path, stat in files.items():
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


# --------------------------------------------------------------------------------- profiles, paper grid
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
    out = run([SNAKEMAKE, "-n", "--configfile", "config/quick.yaml", "--workflow-profile",
               f"workflow/profiles/{profile}"], repo).stdout
    train = planned_blocks(out, "train")
    assert len(train) == 12
    for resources in train:
        for key, value in train_resources.items():
            assert resources.get(key) == value, (key, resources)


# The paper's grid (config/paper.yaml): Tables 1-2 = 5 datasets x 2 shots x 6 methods; Figure 3 adds
# CIFAR-FS at 10/15/20 ways x 2 shots x 6 methods; Table 3 = 6 miniImageNet 5-shot models x 3 test sets.
# Its tune block tunes each of the 96 (setting, method) with 8 trials and runs the paper's values beside
# (the untuned baselines double the runs).
PAPER_RUNS = 60 + 36
PAPER_JOBS = {"data": 5, "tasks": 5 * 2 + 3 * 2, "val_tasks": 5 * 2 + 3 * 2, "trial": PAPER_RUNS * 8,
              "tune": PAPER_RUNS, "train": 2 * PAPER_RUNS, "evaluate": 2 * PAPER_RUNS,
              "evaluate_cross_domain": 2 * 18}


@pytest.mark.parametrize("profile", ["slurm", "local-gpu"])
def test_profiles_plan_the_whole_paper_grid_with_a_gpu_per_training_and_evaluation_job(profile, tmp_path):
    repo = copy_workflow(tmp_path)
    out = run([SNAKEMAKE, "-n", "--configfile", "config/paper.yaml", "--workflow-profile",
               f"workflow/profiles/{profile}"], repo).stdout
    counts = job_counts(out)
    assert {rule: counts.get(rule) for rule in PAPER_JOBS} == PAPER_JOBS
    for rule in ("trial", "train", "evaluate", "evaluate_cross_domain"):
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
