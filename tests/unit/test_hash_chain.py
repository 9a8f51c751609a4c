"""A hash chain that is checked (issue 13, item 3): evaluation checks the model against what training recorded;
the report recomputes every mean and interval and checks the model, task-list and dataset-manifest hashes;
every mismatch and every unreadable file is one line naming the file and what to rerun."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from metalr import cli, io, stages
from metalr import config as config_mod
from metalr.data.arrays import load_split
from metalr.data.episodes import make_task_list
from metalr.report import verify
from metalr.train import checkpoint
from metalr.train.loop import LOG_FILE, MODEL_FILE
from tests.unit.synthetic import RUN_ID, tiny_project

RUN = config_mod.Run.parse(RUN_ID)


@pytest.fixture(scope="module")
def built(tmp_path_factory, blobs_root):
    return tiny_project(tmp_path_factory.mktemp("chain"), blobs_root)


@pytest.fixture
def project(built, tmp_path, monkeypatch):
    """A fresh copy of the trained and evaluated tiny project, as the working directory; returns its files."""
    copy = tmp_path / "project"
    shutil.copytree(built, copy)
    monkeypatch.chdir(copy)
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG, copy / "tiny.yaml"])
    return {"root": copy, "model": stages.model_dir(cfg, RUN) / MODEL_FILE, "log": stages.model_dir(cfg, RUN) / LOG_FILE,
            "metrics": stages.metrics_file(cfg, RUN), "tasks": stages.tasks_file(cfg, "glyphs", 3, 1),
            "manifest": copy / "data" / "glyphs" / "manifest.json", "report": stages.report_dir(cfg),
            "checkpoint": stages.checkpoint_file(cfg, RUN), "cfg": cfg}


def stage(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main([argv[0], "--configfile", "tiny.yaml", *argv[1:]])
    err = capsys.readouterr().err
    return code, err


def evaluate(capsys) -> tuple[int, str]:
    return stage(capsys, "evaluate", "--run", RUN_ID, "--no-progress")


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_the_untouched_chain_passes_and_the_report_is_written(project, capsys):
    """The positive control of every test below."""
    verify.check_inputs([project["metrics"]], project["root"] / "data")
    assert stage(capsys, "report")[0] == 0
    assert (project["report"] / "report.json").is_file()


def test_evaluate_refuses_a_model_with_one_flipped_bit(project, capsys):
    model = torch.load(project["model"], weights_only=True)
    raw = bytearray(project["model"].read_bytes())
    needle = model["params"]["conv0.weight"].numpy().tobytes()[:16]
    at = bytes(raw).index(needle)
    raw[at] ^= 0x01  # one bit of one conv weight
    project["model"].write_bytes(bytes(raw))
    project["metrics"].unlink()
    code, err = evaluate(capsys)
    line = one_line(err)
    assert code == 2 and f"{project['model']} has sha256" in line and "recorded" in line
    assert f"rerun the train stage for run {RUN_ID}" in line
    assert not project["metrics"].exists()


@pytest.mark.parametrize("edit", ["mean", "ci95", "one task"])
def test_the_report_recomputes_every_statistic_from_the_per_task_accuracies(project, capsys, edit):
    metrics = io.read_json(project["metrics"])
    if edit == "one task":
        metrics["per_task_accuracy"][0] = 1.0 - metrics["per_task_accuracy"][0] + 0.5
    else:
        metrics["accuracy"][edit] = 0.99 if edit == "mean" else 0.0001
    io.write_json(project["metrics"], metrics)
    code, err = stage(capsys, "report")
    line = one_line(err)
    assert code == 2 and f"{project['metrics']}: accuracy." in line and "per-task accuracies give" in line
    assert f"rerun the evaluate stage for run {RUN_ID}" in line
    assert not project["report"].exists()


def test_the_report_refuses_a_model_changed_after_its_evaluation(project, capsys):
    """A retrained model (its training log updated too) with the old metrics still beside it."""
    model = torch.load(project["model"], weights_only=True)
    model["params"] = {k: v + 1e-3 for k, v in model["params"].items()}
    sha = checkpoint.write_torch(project["model"], model)
    io.write_json(project["log"], {**io.read_json(project["log"]), "model_sha256": sha})
    code, err = stage(capsys, "report")
    line = one_line(err)
    assert code == 2 and f"{project['model']} has sha256 {sha[:16]}" in line
    assert "changed after it was evaluated" in line and f"rerun the evaluate stage for run {RUN_ID}" in line


def test_the_report_refuses_a_model_its_training_did_not_write(project, capsys):
    """Model and metrics swapped together: the training log still holds the trained model's hash."""
    model = torch.load(project["model"], weights_only=True)
    model["params"] = {k: torch.zeros_like(v) for k, v in model["params"].items()}
    sha = checkpoint.write_torch(project["model"], model)
    io.write_json(project["metrics"], {**io.read_json(project["metrics"]),
                                       "model": {"path": str(project["model"]), "sha256": sha}})
    code, err = stage(capsys, "report")
    line = one_line(err)
    assert code == 2 and f"its training log {project['log']} recorded" in line
    assert f"rerun the train stage for run {RUN_ID}" in line


def test_the_report_refuses_a_task_list_drawn_again_after_the_evaluation(project, capsys):
    ecfg = project["cfg"]["evaluate"]
    again = make_task_list(load_split(project["root"] / "data" / "glyphs", "test"), dataset="glyphs",
                           split_name="test", ways=3, shots=1, queries=ecfg["queries"], tasks=ecfg["tasks"], seed=7,
                           source_manifest_sha256=io.sha256_file(project["manifest"]))
    io.write_json(project["tasks"], again)
    code, err = stage(capsys, "report")
    line = one_line(err)
    assert code == 2 and f"task list {project['tasks']} has sha256 {again['sha256'][:16]}" in line
    assert f"rerun the evaluate stage for run {RUN_ID}" in line


def test_a_rebuilt_dataset_is_caught_by_the_report_and_by_evaluation(project, capsys):
    manifest = io.read_json(project["manifest"])
    io.write_json(project["manifest"], {**manifest, "source": {"kind": "rebuilt"}})
    code, err = stage(capsys, "report")
    line = one_line(err)
    assert code == 2 and "data/glyphs/manifest.json has sha256" in line and "was rebuilt (or changed) since" in line
    assert f"rerun the train stage for run {RUN_ID}" in line
    project["metrics"].unlink()
    code, err = evaluate(capsys)
    line = one_line(err)
    assert code == 2 and f"task list {project['tasks']} was drawn from another build" in line
    assert "rerun the tasks stage" in line and not project["metrics"].exists()


@pytest.mark.parametrize("damage", ["truncated", "not json"])
def test_unreadable_json_is_one_line_naming_the_file_and_the_fix(project, capsys, damage):
    text = project["metrics"].read_text()
    project["metrics"].write_text(text[: len(text) // 2] if damage == "truncated" else "<html>503</html>")
    code, err = stage(capsys, "report")
    line = one_line(err)
    assert code == 2 and f"{project['metrics']} is not readable JSON" in line
    assert "rerun the evaluate stage that writes it" in line
    project["metrics"].unlink()
    text = project["tasks"].read_text()
    project["tasks"].write_text(text[: len(text) // 2])
    code, err = evaluate(capsys)
    assert code == 2 and f"{project['tasks']} is not readable JSON" in one_line(err) and "metalr tasks" in err


def test_a_truncated_model_is_one_line_naming_it_and_the_fix(project, capsys):
    data = project["model"].read_bytes()
    project["model"].write_bytes(data[: len(data) // 2])
    project["metrics"].unlink()
    code, err = evaluate(capsys)  # its hash no longer matches the training log's
    assert code == 2 and str(project["model"]) in one_line(err) and "rerun the train stage" in err
    io.write_json(project["log"], {**io.read_json(project["log"]), "model_sha256": io.sha256_file(project["model"])})
    code, err = evaluate(capsys)  # hash recorded for the truncated file: then loading it fails, named
    line = one_line(err)
    assert code == 2 and f"{project['model']} cannot be read" in line and "truncated or damaged" in line
    assert f"rerun the train stage for run {RUN_ID}" in line
    assert not project["metrics"].exists()


def test_a_corrupt_checkpoint_is_moved_aside_and_training_restarts(project, capsys):
    before = project["model"].read_bytes()
    checkpoint.save(project["checkpoint"], {"config": {}, "iteration": 1, "lambdas": np.zeros(1), "losses": np.zeros(1),
                                            "accuracies": np.zeros(1), "outer_lrs": np.zeros(1)})
    data = project["checkpoint"].read_bytes()
    project["checkpoint"].write_bytes(data[: len(data) // 3])
    code, err = stage(capsys, "train", "--run", RUN_ID, "--no-progress")
    assert code == 0
    aside = project["checkpoint"].with_name(project["checkpoint"].name + ".corrupt-1")
    assert f"warning: {project['checkpoint']} cannot be read" in err and f"moved to {aside}" in err
    assert aside.read_bytes() == data[: len(data) // 3]  # kept, never deleted
    assert project["model"].read_bytes() == before  # restarted from scratch: the same model as the first training


def test_a_metrics_file_missing_its_hash_records_is_refused(project, capsys):
    metrics = io.read_json(project["metrics"])
    del metrics["model"]
    io.write_json(project["metrics"], metrics)
    code, err = stage(capsys, "report")
    line = one_line(err)
    assert code == 2 and f"{project['metrics']} (or a file it names) lacks a field" in line and "'model'" in line
