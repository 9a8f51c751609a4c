"""Interrupted and concurrent work, and the project the CLI runs in (issue 13, items 5 and 6)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from metalr import config as config_mod
from metalr import io, stages
from metalr.config import REPO_ROOT
from metalr.report import build, figures, pdf
from metalr.train.loop import lock_file
from tests.unit.synthetic import RUN_ID, metalr, write_config
from tests.unit.test_report import make_inputs, report

RUN = config_mod.Run.parse(RUN_ID)


def lock_of(folder) -> os.PathLike:
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG, folder / "tiny.yaml"])
    return folder / lock_file(stages.checkpoint_file(cfg, RUN))


def test_a_second_training_of_the_same_run_fails_fast_naming_the_first(tmp_path, blobs_root):
    write_config(tmp_path, blobs_root)
    with io.exclusive_lock(lock_of(tmp_path), "the first training"):  # this process trains the run
        second = metalr(tmp_path, "train", "--configfile", "tiny.yaml", "--run", RUN_ID, "--no-progress")
    assert second.returncode == 2
    assert f"training of run {RUN_ID} is already running in process {os.getpid()}" in second.stderr
    assert not (tmp_path / "results").exists()


def test_a_killed_trainings_lock_does_not_block_the_next(tmp_path, blobs_root):
    write_config(tmp_path, blobs_root)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from metalr import io\n"
        f"with io.exclusive_lock({str(lock_of(tmp_path))!r}, 'x'):\n"
        "    print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    done = metalr(tmp_path, "train", "--configfile", "tiny.yaml", "--run", RUN_ID, "--no-progress")
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    root = tmp_path_factory.mktemp("reported")
    metrics_paths, log_dirs = make_inputs(root)
    report(metrics_paths, log_dirs, root / "generated", root)
    return root


@pytest.fixture
def inputs(reported, tmp_path):
    """Synthetic metrics and training logs, and their report in ``generated`` (a fresh copy per test)."""
    shutil.copytree(reported, tmp_path, dirs_exist_ok=True)
    out = tmp_path / "generated"
    metrics_paths = sorted((tmp_path / "metrics").iterdir())
    log_dirs = sorted((tmp_path / "train").iterdir())
    return metrics_paths, log_dirs, out, {p.name: p.read_bytes() for p in out.iterdir()}


def rebuild(tmp_path, inputs):
    metrics_paths, log_dirs, out, _ = inputs
    return report(metrics_paths, log_dirs, out, tmp_path)


def test_a_report_that_fails_while_rendering_leaves_the_previous_one_whole(tmp_path, inputs, monkeypatch):
    *_, out, before = inputs
    monkeypatch.setattr(figures, "training_figure", lambda logs, path: 1 / 0)  # the last figure fails
    with pytest.raises(ZeroDivisionError):
        rebuild(tmp_path, inputs)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert build.check_report(out)["files"]
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []  # no staging left


def test_a_report_cut_short_while_replacing_its_files_is_refused_by_the_pdf_stage(tmp_path, inputs, monkeypatch):
    *_, out, _ = inputs
    real, moved = os.replace, []

    def killed_after_three(src, dst):  # moves into the report folder; staging's own writes pass
        if Path(dst).parent == out:
            if len(moved) == 3:
                raise KeyboardInterrupt("killed")
            moved.append(dst)
        real(src, dst)

    monkeypatch.setattr(build.os, "replace", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        rebuild(tmp_path, inputs)
    monkeypatch.setattr(build.os, "replace", real)
    with pytest.raises(build.IncompleteReport, match=r"report.json is missing: the report in .* is incomplete"):
        build.check_report(out)
    monkeypatch.setattr(pdf, "_require_latex", lambda: None)  # the refusal comes before LaTeX is run
    with pytest.raises(build.IncompleteReport):
        pdf.compile_appendix(REPO_ROOT / "paper" / "appendix.tex", out, tmp_path / "appendix.pdf")
    rebuild(tmp_path, inputs)
    assert build.check_report(out)["files"].keys() == set(build.OUTPUTS) - {build.REPORT_MANIFEST}


def test_a_report_file_changed_after_the_report_is_refused(tmp_path, inputs):
    *_, out, _ = inputs
    (out / "tables.tex").write_text("edited")
    with pytest.raises(build.IncompleteReport, match="tables.tex is not the file the report recorded"):
        build.check_report(out)


def test_the_next_report_removes_the_staging_folder_a_killed_report_left(tmp_path, inputs):
    *_, out, _ = inputs
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out.parent / f".{out.name}.tmp-{dead.pid}"
    stale.mkdir()
    (stale / "tables.tex").write_text("half")
    rebuild(tmp_path, inputs)
    assert not stale.exists()


def second_checkout(folder, runs_in_grid: list[str]) -> None:
    """A checkout of the project sharing this virtualenv: its own config/config.yaml (and Snakefile)."""
    (folder / "config").mkdir(parents=True)
    cfg = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    cfg["grid"]["algorithms"] = runs_in_grid
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    shutil.copy(REPO_ROOT / "Snakefile", folder / "Snakefile")


def test_the_cli_reads_the_config_of_the_project_it_runs_in(tmp_path):
    installed = config_mod.grid_runs(config_mod.load([config_mod.DEFAULT_CONFIG]))
    second_checkout(tmp_path / "checkout", ["maml"])
    (tmp_path / "checkout" / "docs").mkdir()
    for cwd in (tmp_path / "checkout", tmp_path / "checkout" / "docs"):  # from its root and from a folder below
        result = metalr(cwd, "validate")
        assert result.returncode == 0, result.stderr
        assert f"config OK ({tmp_path / 'checkout' / 'config' / 'config.yaml'})" in result.stdout
        runs = [line.strip() for line in result.stdout.splitlines()[1:]]
        assert runs and all("/maml/" in run for run in runs) and len(runs) < len(installed)
    outside = tmp_path / "elsewhere"  # no project here: the checkout holding the package
    outside.mkdir()
    assert f"config OK ({config_mod.DEFAULT_CONFIG})" in metalr(outside, "validate").stdout
    assert config_mod.project_root(tmp_path / "checkout" / "docs") == tmp_path / "checkout"
