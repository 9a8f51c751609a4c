"""The Snakemake workflow and the DVC pipeline, planned and run end to end on a tiny config."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from metalr import dvcgen
from metalr.config import REPO_ROOT
from metalr.report.pdf import latex_available

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
COPIED = ["Snakefile", "workflow", "config", "paper/appendix.tex", "paper/templates", "src", ".dvc/config",
          ".dvcignore", "tests/data"]


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def planned_jobs(cwd: Path, *args: str) -> dict[str, int]:
    """Job counts per rule from Snakemake's dry-run summary."""
    out = run(["snakemake", "-n", "--cores", "1", *args], cwd).stdout
    table = out.split("Job stats:")[1].split("Reasons:")[0] if "Job stats:" in out else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def test_lint_is_clean():
    result = run(["snakemake", "--lint", "--configfile", "config/quick.yaml"], REPO_ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_dry_run_plans_every_job_of_the_quick_grid(tmp_path):
    # Pipeline outputs are skipped at the top level only: src/metalr/data is code, not data/.
    def outputs(folder: str, names: list[str]) -> list[str]:
        top_level = Path(folder) == REPO_ROOT
        return [n for n in names if n in (".venv", ".git", "generated", ".snakemake", "__pycache__")
                or (top_level and n in ("data", "results", "work", "logs"))]

    shutil.copytree(REPO_ROOT, tmp_path / "repo", ignore=outputs)
    jobs = planned_jobs(tmp_path / "repo", "--configfile", "config/quick.yaml")
    expected = {"data": 1, "tasks": 2, "train": 12, "evaluate": 12, "report": 1, "all": 1}
    if latex_available():
        expected["appendix_pdf"] = 1
    assert jobs == expected


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
    root = tmp_path_factory.mktemp("tiny")
    for item in COPIED:
        src, dst = REPO_ROOT / item, root / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst, **(
            {"ignore": shutil.ignore_patterns("__pycache__")} if src.is_dir() else {}))
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


def test_editing_a_module_reruns_exactly_its_dependents(tiny_workflow):
    root, _ = tiny_workflow
    stats = root / "src" / "metalr" / "evaluate" / "stats.py"
    original = stats.read_text()
    try:
        stats.write_text(original + "\n# edited\n")
        jobs = planned_jobs(root, "--configfile", "tests/data/tiny.yaml")
        expected = {"evaluate": 4, "report": 1, "all": 1}
        if latex_available():
            expected["appendix_pdf"] = 1
        assert jobs == expected
    finally:
        stats.write_text(original)
        os.utime(stats, (1, 1))  # back to an old mtime, so later tests see an up-to-date workflow


def test_dvc_tracks_the_same_stages_and_reruns_only_what_changed(tiny_workflow):
    root, _ = tiny_workflow
    run(["git", "init", "-q"], root)
    run([str(BIN / "metalr"), "dvc-yaml", "--configfile", "tests/data/tiny.yaml"], root)
    run(["dvc", "commit", "-f", "-q"], root)  # record the outputs Snakemake made with the same commands
    assert "up to date" in run(["dvc", "status"], root).stdout.lower()
    anil = root / "src" / "metalr" / "algorithms" / "anil.py"
    anil.write_text(anil.read_text() + "\n# edited\n")
    changed = {line.rstrip(":").strip() for line in run(["dvc", "status"], root).stdout.splitlines()
               if line.endswith(":") and not line.startswith("\t")}
    changed = {c for c in changed if not c.startswith("changed")}
    assert changed == {"train_glyphs_5w1s_anil_fixed_seed1", "train_glyphs_5w1s_anil_mlplr_seed1",
                       "train_glyphs_5w1s_maml_fixed_seed1", "train_glyphs_5w1s_maml_mlplr_seed1",
                       "evaluate_glyphs_5w1s_anil_fixed_seed1", "evaluate_glyphs_5w1s_anil_mlplr_seed1",
                       "evaluate_glyphs_5w1s_maml_fixed_seed1", "evaluate_glyphs_5w1s_maml_mlplr_seed1"}
