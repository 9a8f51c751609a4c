"""Bad input fails through the CLI before work starts: exit code 2, a message naming the thing and the
fix, and no output file. (Config details are unit-tested in test_config.py, the sampler in test_episodes.py.)"""
from __future__ import annotations

import shutil

import pytest

from metalr.algorithms import ALGORITHMS
from metalr.data.registry import DATASETS
from metalr.steprules import RULES

from metalr import cli
from tests.unit.synthetic import RUN_ID, write_config

TRAIN = ("train", "--configfile", "tiny.yaml", "--run", RUN_ID, "--no-progress")
TASKS = ("tasks", "--configfile", "tiny.yaml", "--dataset", "glyphs", "--ways", "3", "--shots", "1")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def fails(capsys, *argv: str) -> str:
    assert cli.main(list(argv)) == 2
    return capsys.readouterr().err


def assert_no_outputs(folder):
    assert not (folder / "results").exists() and not (folder / "work").exists()


@pytest.mark.parametrize("sections, expected", [
    ({"grid": {"datasets": ["mnist"]}}, "grid.datasets[0]: unknown dataset 'mnist'; valid: " + str(sorted(DATASETS))),
    ({"grid": {"algorithms": ["maml", "reptil"]}},
     "grid.algorithms[1]: unknown algorithm 'reptil'; valid: " + str(sorted(ALGORITHMS))),
    ({"grid": {"rules": ["adam"]}}, "grid.rules[0]: unknown rule 'adam'; valid: " + str(sorted(RULES))),
    ({"grid": {"ways": [0]}}, "grid.ways[0]: 0 is less than the minimum of 2"),
    ({"grid": {"shots": [0]}}, "grid.shots[0]: 0 is less than the minimum of 1"),
    ({"train": {"queries": 0}}, "train.queries: 0 is less than the minimum of 1"),
    ({"evaluate": {"queries": -1}}, "evaluate.queries: -1 is less than the minimum of 1"),
    ({"rules": {"mlplr": {"lr_max": 0.5, "lr_min": 0.9}}},
     "rules.mlplr.lr_min (0.9) is larger than rules.mlplr.lr_max (0.5); set lr_min <= lr_max"),
    ({"deterministic": "yes"}, "deterministic: 'yes' is not of type 'boolean'"),
])
def test_bad_config_stops_training_before_it_starts(workdir, blobs_root, capsys, sections, expected):
    write_config(workdir, blobs_root, **sections)
    err = fails(capsys, *TRAIN)
    assert "invalid config" in err and expected in err
    assert_no_outputs(workdir)


def test_run_outside_the_grid_lists_the_valid_runs(workdir, blobs_root, capsys):
    write_config(workdir, blobs_root)
    err = fails(capsys, "train", "--configfile", "tiny.yaml", "--run", "glyphs/3w1s/reptile/mlplr/seed1")
    assert "run glyphs/3w1s/reptile/mlplr/seed1 is not in the config's grid" in err and RUN_ID in err
    assert_no_outputs(workdir)


@pytest.mark.parametrize("args, expected", [
    (("--dataset", "mnist", "--ways", "3", "--shots", "1"), "unknown dataset 'mnist'; valid: " + str(sorted(DATASETS))),
    (("--dataset", "glyphs", "--ways", "0", "--shots", "1"), "--ways must be an integer >= 2, got 0"),
    (("--dataset", "glyphs", "--ways", "3", "--shots", "0"), "--shots must be an integer >= 1, got 0"),
])
def test_bad_task_list_arguments_are_refused(workdir, blobs_root, capsys, args, expected):
    write_config(workdir, blobs_root)
    assert expected in fails(capsys, "tasks", "--configfile", "tiny.yaml", *args)
    assert_no_outputs(workdir)


def test_unknown_dataset_is_refused_by_the_data_stage(workdir, blobs_root, capsys):
    write_config(workdir, blobs_root)
    assert "unknown dataset 'mnist'; valid: " + str(sorted(DATASETS)) in fails(capsys, "data", "--configfile", "tiny.yaml",
                                                                 "--dataset", "mnist")
    assert sorted(p.name for p in blobs_root.iterdir()) == ["glyphs"]


def copy_dataset(blobs_root, workdir):
    shutil.copytree(blobs_root / "glyphs", workdir / "data" / "glyphs")
    write_config(workdir, workdir / "data")
    return workdir / "data" / "glyphs"


def test_missing_split_file_is_named(workdir, blobs_root, capsys):
    data = copy_dataset(blobs_root, workdir)
    (data / "test_images.npy").unlink()
    err = fails(capsys, *TASKS)
    assert f"{data / 'test_images.npy'} is missing; rerun the data stage for glyphs" in err
    assert_no_outputs(workdir)


def test_array_that_differs_from_its_manifest_is_refused(workdir, blobs_root, capsys):
    data = copy_dataset(blobs_root, workdir)
    array = bytearray((data / "train_images.npy").read_bytes())
    array[-1] ^= 0xFF
    (data / "train_images.npy").write_bytes(bytes(array))
    err = fails(capsys, *TRAIN)
    assert f"{data / 'train_images.npy'} does not match the sha256 recorded in {data / 'manifest.json'}" in err
    assert f"Delete {data} and rerun the data stage" in err
    assert_no_outputs(workdir)


def test_diverging_run_stops_with_run_iteration_and_last_finite_loss(workdir, blobs_root, capsys):
    write_config(workdir, blobs_root, train={"outer_lr": 1e30, "iterations": 6, "checkpoint_every": 100},
                 rules={"mlplr": {"lr_max": 1e6, "lr_min": 1e6}})
    err = fails(capsys, *TRAIN)
    assert f"run {RUN_ID} diverged at iteration" in err and "last finite loss" in err
    assert "No results were written" in err
    assert not (workdir / "results").exists()


def test_evaluating_a_model_trained_with_another_config_is_refused(workdir, blobs_root, capsys):
    write_config(workdir, blobs_root, train={"iterations": 2})
    assert cli.main(list(TRAIN)) == 0
    write_config(workdir, blobs_root, train={"iterations": 3})
    err = fails(capsys, "evaluate", "--configfile", "tiny.yaml", "--run", RUN_ID, "--no-progress")
    assert f"was trained with a different config than run {RUN_ID} asks for; retrain it" in err
    assert not (workdir / "results" / "unit" / "metrics").exists()
