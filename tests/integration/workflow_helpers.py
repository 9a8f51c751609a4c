"""Running Snakemake (and DVC) in a copy of the workflow, and reading its plans."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

from metalr.config import REPO_ROOT

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
COPIED = ["Snakefile", "workflow", "config", "paper/appendix.tex", "paper/sections", "paper/templates", "src", ".dvc/config",
          ".dvcignore", "tests/data"]


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def job_counts(output: str) -> dict[str, int]:
    """Job counts per rule from the (first) "Job stats" table Snakemake prints."""
    table = output.split("Job stats:")[1].split("\n\n")[0] if "Job stats:" in output else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def planned_jobs(cwd: Path, *args: str) -> dict[str, int]:
    """Job counts per rule from Snakemake's dry-run summary."""
    return job_counts(run(["snakemake", "-n", "--cores", "1", *args], cwd).stdout)


def copy_workflow(root: Path) -> Path:
    """The files a workflow run needs, copied into ``root``."""
    for item in COPIED:
        src, dst = REPO_ROOT / item, root / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst, **(
            {"ignore": shutil.ignore_patterns("__pycache__")} if src.is_dir() else {}))
    return root


def job_outputs(dry_run: str) -> list[list[str]]:
    """Per planned job, the output and log files a dry run lists (paths hold no ', ')."""
    jobs = []
    for block in re.split(r"^\S*rule \w+:$", dry_run, flags=re.M)[1:]:
        files = []
        for key in ("output", "log"):
            found = re.search(rf"^\s+{key}: (.+)$", block, re.M)
            files += found.group(1).split(", ") if found else []
        jobs.append(files)
    return jobs


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
