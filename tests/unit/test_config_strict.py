"""Config strictness (issue 13, item 4): what PyYAML and jsonschema let through, refused before any job runs."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from metalr import cli, stages
from metalr import config as config_mod
from metalr.algorithms import ALGORITHMS, get_algorithm
from metalr.config import ConfigError
from metalr.models import get_backbone
from metalr.steprules import make_rule
from tests.unit.helpers import tiny_params, tiny_task
from tests.unit.synthetic import RUN_ID, write_config


def load(folder: Path, text: str) -> dict:
    path = folder / "override.yaml"
    path.write_text(text)
    return config_mod.load([config_mod.DEFAULT_CONFIG, path])


def test_a_key_given_twice_is_refused_with_file_and_line(tmp_path):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, "train:\n  iterations: 5\nseed: 3\ntrain:\n  inner_steps: 2\n")
    assert f"{tmp_path / 'override.yaml'}, line 4: key 'train' is given twice in one mapping (first at line 1)" \
        in str(error.value)
    with pytest.raises(ConfigError, match="line 3: key 'iterations' is given twice"):
        load(tmp_path, "train:\n  iterations: 5\n  iterations: 6\n")
    assert load(tmp_path, "train:\n  iterations: 5\n")["train"]["iterations"] == 5  # the positive control


@pytest.mark.parametrize("text, where", [
    ("grid:\n  ways: [5.0]\n", "grid.ways[0]: 5.0 is not of type 'integer'"),
    ("grid:\n  shots: [1.0]\n", "grid.shots[0]: 1.0 is not of type 'integer'"),
    ("train:\n  iterations: 100.0\n", "train.iterations: 100.0 is not of type 'integer'"),
    ("evaluate:\n  queries: 15.0\n", "evaluate.queries: 15.0 is not of type 'integer'"),
    ("train:\n  queries: true\n", "train.queries: True is not of type 'integer'"),
])
def test_non_integer_counts_are_refused(tmp_path, text, where):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, text)
    assert where in str(error.value)


@pytest.fixture
def built(tmp_path, blobs_root, monkeypatch):
    """A working directory whose data/glyphs is built (10/5/6 classes of 8 images)."""
    shutil.copytree(blobs_root / "glyphs", tmp_path / "data" / "glyphs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("sections, message", [
    ({"grid": {"ways": [7]}}, "grid.ways: 7-way tasks of glyphs need 7 classes, its test split has 6 "
                              "(data/glyphs/manifest.json); lower the ways"),
    ({"grid": {"ways": [3, 11]}}, "grid.ways: 11-way tasks of glyphs need 11 classes, its train split has 10"),
    ({"train": {"queries": 8}}, "grid.shots: 1 shots + train.queries 8 = 9 images per class, but the smallest class "
                                "of the train split of glyphs has 8"),
    ({"evaluate": {"queries": 8}}, "grid.shots: 1 shots + evaluate.queries 8 = 9 images per class"),
])
def test_ways_and_images_are_checked_against_a_built_datasets_manifest(built, capsys, sections, message):
    write_config(built, Path("data"), **sections)
    assert cli.main(["train", "--configfile", "tiny.yaml", "--run", RUN_ID, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert not (built / "results").exists() and not (built / "work").exists()


def test_a_task_list_asking_more_than_the_split_holds_is_a_config_error(built, capsys):
    write_config(built, Path("data"))
    assert cli.main(["tasks", "--configfile", "tiny.yaml", "--dataset", "glyphs", "--ways", "9", "--shots", "1"]) == 2
    assert "9-way tasks need 9 classes; the test split of glyphs has 6; lower the ways" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["..", ".", "../elsewhere", "a/b", ".hidden"])
def test_experiment_names_stay_one_plain_folder(tmp_path, name):
    with pytest.raises(ConfigError, match="experiment: .* does not match"):
        load(tmp_path, f"experiment: {name!r}\n")


def test_every_output_path_is_checked_to_stay_in_its_root():
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG])
    run = config_mod.Run.parse(RUN_ID)
    assert stages.metrics_file(cfg, run).parts[:2] == ("results", cfg["experiment"])
    cfg["experiment"] = ".."  # past validation (the guard behind it)
    for build in (lambda: stages.metrics_file(cfg, run), lambda: stages.model_dir(cfg, run),
                  lambda: stages.report_dir(cfg), lambda: stages.checkpoint_file(cfg, run)):
        with pytest.raises(ConfigError, match="is not inside"):
            build()
    from metalr.stages import dataset_dir
    with pytest.raises(ConfigError, match="is not inside data/"):
        dataset_dir({"data": {"root": "data"}}, "..")


def test_fomaml_with_a_meta_gradient_through_mlplrs_rate_is_refused(tmp_path):
    text = "grid:\n  algorithms: [maml, fomaml]\n  rules: [mlplr]\nrules:\n  mlplr:\n    grad_through_lr: true\n"
    with pytest.raises(ConfigError) as error:
        load(tmp_path, text)
    assert ("rules.mlplr.grad_through_lr: true has no effect with algorithm 'fomaml' (grid.algorithms[1]), whose "
            "meta-gradient does not differentiate through the inner loop") in str(error.value)
    assert "'maml'" not in str(error.value)
    load(tmp_path, text.replace("maml, fomaml", "maml, anil"))  # second order: the setting acts
    load(tmp_path, text.replace("true", "false"))


def test_training_states_its_memory_and_time_and_refuses_logs_that_cannot_fit(tmp_path, blobs_root, monkeypatch,
                                                                              capsys):
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path, blobs_root, train={"iterations": 10 ** 12})
    assert cli.main(["train", "--configfile", "tiny.yaml", "--run", RUN_ID, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "train.iterations = 1000000000000: the training logs of run" in err and "lower train.iterations" in err
    assert not (tmp_path / "results").exists()
    write_config(tmp_path, blobs_root)
    assert cli.main(["train", "--configfile", "tiny.yaml", "--run", RUN_ID, "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"train {RUN_ID}: 6 iterations; their logs take" in err and "MiB available" in err
    assert f"train {RUN_ID}: the first iteration took" in err and "the remaining 5 should take about" in err


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_the_differentiates_inner_loop_flag_is_what_grad_through_lr_changes(float64, name):
    """The flag the grad_through_lr check reads, against the meta-gradients themselves: with it, letting the
    meta-gradient through MLPLR's rate changes them; without it, they are bitwise the same."""
    task = tiny_task()
    grads = []
    for through in (False, True):
        params = tiny_params()
        rule = make_rule("mlplr", {"mlplr": {"grad_through_lr": through, "lr_max": 3.0, "lr_min": 0.1}})
        result = get_algorithm(name, {}, get_backbone("conv4")).task_result(params, {}, rule, task, 2, training=True)
        grads.append(torch.autograd.grad(result.meta_objective, list(params.values()), allow_unused=True))
    same = all((a is None and b is None) or torch.equal(a, b) for a, b in zip(*grads))
    assert same != ALGORITHMS[name].flag("differentiates_inner_loop")
