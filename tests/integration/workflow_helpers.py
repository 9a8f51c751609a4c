"""Running Snakemake and DVC in a copy of the workflow, and reading their plans.

Snakemake runs from the virtual environment's bin folder by absolute path with that folder NOT on PATH:
the README's `.venv/bin/snakemake ...` without an activated environment must work. DVC runs as the
README says, in the activated environment (its commands run `python -m metalr` from PATH).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import yaml

from metalr.config import REPO_ROOT

BIN = Path(sys.executable).parent
SNAKEMAKE, DVC = str(BIN / "snakemake"), str(BIN / "dvc")
ENV = {**os.environ, "PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                             if Path(p).resolve() != BIN.resolve())}
ACTIVATED = {**ENV, "PATH": f"{BIN}{os.pathsep}{ENV['PATH']}", "VIRTUAL_ENV": str(BIN.parent)}
COPIED = ["Snakefile", "workflow", "config", "paper/appendix.tex", "paper/sections", "paper/templates", "src",
          ".dvc/config", ".dvcignore", ".gitignore", "tests/data"]


def run(cmd: list[str], cwd: Path, check: bool = True, env: dict[str, str] = ENV) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def metalr(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "metalr", *args], cwd, check)


def job_counts(output: str) -> dict[str, int]:
    """Job counts per rule from the (first) "Job stats" table Snakemake prints."""
    table = output.split("Job stats:")[1].split("\n\n")[0] if "Job stats:" in output else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def dry_run(cwd: Path, *args: str) -> str:
    return run([SNAKEMAKE, "-n", "--cores", "1", *args], cwd).stdout


def planned_jobs(cwd: Path, *args: str) -> dict[str, int]:
    """Job counts per rule from Snakemake's dry-run summary."""
    return job_counts(dry_run(cwd, *args))


def params_changed(plan: str) -> dict[str, int]:
    """Per rule, the planned jobs whose reason is a changed param (their own identity, not an upstream job)."""
    counts: dict[str, int] = {}
    for block in re.split(r"^\S*rule (?=\w+:$)", plan, flags=re.M)[1:]:
        rule = block.split(":", 1)[0]
        reason = re.search(r"^\s+reason: (.+)$", block, re.M)
        if reason and "Params have changed" in reason.group(1):
            counts[rule] = counts.get(rule, 0) + 1
    return counts


def copy_workflow(root: Path) -> Path:
    """The files a workflow run needs, copied into ``root``."""
    for item in COPIED:
        src, dst = REPO_ROOT / item, root / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst, **(
            {"ignore": shutil.ignore_patterns("__pycache__")} if src.is_dir() else {}))
    return root


def job_outputs(dry_run_text: str) -> list[list[str]]:
    """Per planned job, the output and log files a dry run lists (paths hold no ', ')."""
    jobs = []
    for block in re.split(r"^\S*rule \w+:$", dry_run_text, flags=re.M)[1:]:
        files = []
        for key in ("output", "log"):
            found = re.search(rf"^\s+{key}: (.+)$", block, re.M)
            files += found.group(1).split(", ") if found else []
        jobs.append(files)
    return jobs


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    return run([DVC, *args], root, env=ACTIVATED)


def dvc_repro(root: Path, *args: str, restored: bool = True) -> set[str]:
    """The stages `dvc repro` runs, and those it restores from its run cache (outputs it made before from the
    same dependencies: "Stage 'x' is cached - skipping run") unless ``restored`` is false."""
    output = dvc(root, "repro", *args)
    pattern = r"(?:Running stage|Stage) '([^']+)'(?::| is cached)" if restored else r"Running stage '([^']+)':"
    return set(re.findall(pattern, output.stdout + output.stderr))


def dvc_changed(root: Path) -> set[str]:
    """The stages whose own dependencies, params or outputs `dvc status` finds changed."""
    return set(json.loads(dvc(root, "status", "--json").stdout or "{}"))


def dvc_downstream(root: Path, names: set[str]) -> set[str]:
    """``names`` and every stage of dvc.yaml that depends on their outputs, directly or not."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    made_by = {out: name for name, stage in stages.items() for out in stage.get("outs", [])}
    closure, added = set(names), True
    while added:
        added = False
        for name, stage in stages.items():
            inputs = stage.get("deps", []) + [p for params in stage.get("params", []) for p in params]
            if name not in closure and any(made_by.get(path) in closure for path in inputs):
                closure.add(name)
                added = True
    return closure


@contextlib.contextmanager
def edited(path: Path, change: Callable[[str], str]) -> Iterator[None]:
    """Edit a text file for the duration; restore its text and its timestamps afterwards."""
    original, stat = path.read_text(), path.stat()
    path.write_text(change(original))
    try:
        yield
    finally:
        path.write_text(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
