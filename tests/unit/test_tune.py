"""Meta-validation and equal-budget tuning: trial points, selection, best_val, and the test split untouched."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from metalr import config as config_mod
from metalr import io, stages, tune
from metalr.config import ConfigError, Run
from metalr.data.arrays import load_split, split_hashes, write_dataset
from metalr.data.episodes import make_task_list
from metalr.evaluate.validation import Validation, ValidationError
from metalr.steprules import RULES
from metalr.train.checkpoint import read_torch
from metalr.train.loop import fit, train
from tests.unit.synthetic import write_blobs
from tests.unit.test_train import tiny_config

RUN = Run("glyphs", 3, 1, "maml", "mlplr", 1)
TUNE = {"trials": 5, "iterations": 3, "sampler": "halton", "seed": 1, "space": {}, "untuned_baseline": False}


def tuned_config(**tune_overrides) -> dict:
    cfg = tiny_config()
    cfg["grid"].update({"algorithms": ["maml"], "rules": ["fixed", "mlplr"], "ways": [3], "shots": [1]})
    cfg["tune"] = {**TUNE, **tune_overrides}
    cfg["evaluate"]["val_tasks"] = 6
    config_mod.validate(cfg)
    return cfg


def write_val_tasks(data_dir, path, ways=3, shots=1, split="val", tasks=6):
    task_list = make_task_list(load_split(data_dir, split), dataset="glyphs", split_name=split, ways=ways, shots=shots,
                               queries=3, tasks=tasks, seed=1, split_sha256=split_hashes(data_dir, split))
    io.write_json(path, task_list)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_blobs(tmp_path_factory.mktemp("blobs"))


def test_trial_points_are_deterministic_inside_their_ranges_and_meet_constraints():
    cfg = tuned_config(trials=16)
    points = tune.trial_points(cfg, "mlplr")
    assert points == tune.trial_points(cfg, "mlplr") and len(points) == 16
    space = {d.setting: d.space for d in tune.search_space(cfg, "mlplr")}
    assert set(space) == {"lr_max", "lr_min", "divergence"}  # grad_through_lr declares no range
    for point in points:
        assert space["lr_max"].low <= point["lr_max"] <= space["lr_max"].high
        assert point["lr_min"] <= point["lr_max"] and point["lr_min"] >= space["lr_min"].low
        assert point["divergence"] in ("kl_label_pred", "kl_div_mean")
    assert {p["divergence"] for p in points} == {"kl_label_pred", "kl_div_mean"}
    # log scale: about half the points below the geometric mid-point of [0.1, 10], i.e. below 1
    assert 5 <= sum(p["lr_max"] < 1.0 for p in points) <= 11
    assert any(p["lr_max"] > math.log(5) for p in points)  # the range lets lr_max exceed ln N
    other_seed = tune.trial_points(tuned_config(trials=16, seed=2), "mlplr")
    assert other_seed != points


def test_dimension_maps_the_unit_interval_onto_its_range():
    log = tune.Dimension("lr", RULES["fixed"].settings["lr"].tune)
    assert log.value(0.0) == pytest.approx(0.001) and log.value(0.5) == pytest.approx(math.sqrt(0.001))
    choice = tune.Dimension("divergence", RULES["mlplr"].settings["divergence"].tune)
    assert [choice.value(u) for u in (0.0, 0.49, 0.5, 0.999)] == ["kl_label_pred"] * 2 + ["kl_div_mean"] * 2


def test_a_space_override_replaces_the_declared_range():
    cfg = tuned_config(space={"fixed": {"lr": {"low": 0.1, "high": 0.2, "log": False}}})
    assert all(0.1 <= p["lr"] <= 0.2 for p in tune.trial_points(cfg, "fixed"))


@pytest.mark.parametrize("tune_block, message", [
    ({"trials": {"fixed": 8, "mlplr": 16}}, "tune.trials.fixed = 8, tune.trials.mlplr = 16: every rule gets the same"),
    ({"iterations": {"fixed": 3, "mlplr": 4}}, "tune.iterations.fixed = 3, tune.iterations.mlplr = 4"),
    ({"trials": {"fixed": 8}}, "tune.trials: no value for the grid's rule(s) ['mlplr']"),
    ({"space": {"mlplr": {"lr_maxx": {"low": 0.1, "high": 1.0, "log": True}}}}, "tune.space.mlplr.lr_maxx: mlplr has no"),
    ({"space": {"fixed": {"lr": {"low": 0.0, "high": 1.0, "log": True}}}}, "need low < high (and low > 0 when log)"),
    ({"sampler": "sobol", "trials": 6}, "tune.trials: 6 is not a power of 2"),
], ids=["trials", "iterations", "missing", "setting", "range", "sobol"])
def test_unequal_or_malformed_budgets_are_refused_naming_the_keys(tune_block, message):
    cfg = tiny_config()
    cfg["grid"]["rules"] = ["fixed", "mlplr"]
    cfg["tune"] = {**TUNE, **tune_block}
    with pytest.raises(ConfigError) as err:
        config_mod.validate(cfg)
    assert message in str(err.value)


def test_equal_per_rule_budgets_are_accepted():
    tuned_config(trials={"fixed": 4, "mlplr": 4}, iterations={"fixed": 3, "mlplr": 3})


def test_best_val_needs_validation():
    cfg = tiny_config(select="best_val")
    with pytest.raises(ConfigError, match="train.select is best_val but train.validate_every is 0"):
        config_mod.validate(cfg)


def test_untuned_baseline_adds_a_run_per_rule_at_the_configured_values():
    cfg = tuned_config(untuned_baseline=True)
    rules = sorted({r.rule for r in config_mod.grid_runs(cfg)})
    assert rules == ["fixed", "fixed-untuned", "mlplr", "mlplr-untuned"]
    assert config_mod.tuned_cells(cfg) == [("glyphs", 3, 1, "maml", "fixed"), ("glyphs", 3, 1, "maml", "mlplr")]
    untuned = Run("glyphs", 3, 1, "maml", "mlplr-untuned", 1)
    settings, record = tune.config_for_run(cfg, untuned, None)
    assert record is None and stages.settings("train", settings, stages.run_job(untuned))["rules.mlplr"] == cfg["rules"]["mlplr"]


def trial_results(cfg, data_dir, folder, rule="mlplr"):
    val = write_val_tasks(data_dir, folder / "val.json")
    run = tune.trial_run(cfg, "glyphs", 3, 1, "maml", rule)
    files = []
    for k in range(cfg["tune"]["trials"]):
        out = folder / f"trial{k}.json"
        tune.run_trial(cfg, run, k, data_dir, val, folder / f"trial{k}.pt", out, progress=False)
        files.append(out)
    return run, files


def test_a_trial_trains_briefly_and_scores_the_validation_tasks(data_dir, tmp_path):
    cfg = tuned_config(trials=2)
    run, files = trial_results(cfg, data_dir, tmp_path)
    result = io.read_json(files[1])
    assert result["settings"] == tune.trial_points(cfg, "mlplr")[1] and result["iterations"] == 3
    assert len(result["validation"]["per_task_accuracy"]) == 6
    assert result["validation"]["task_list"]["sha256"] == io.read_json(tmp_path / "val.json")["sha256"]
    assert set(result["data"]) == {"train", "val"}  # nothing of the test split
    assert not (tmp_path / "trial1.pt").exists()
    with pytest.raises(ConfigError, match="trial 2 of mlplr does not exist: tune.trials gives 2"):
        tune.run_trial(cfg, run, 2, data_dir, tmp_path / "val.json", tmp_path / "t.pt", tmp_path / "t.json")


def test_validation_refuses_a_test_task_list(data_dir, tmp_path):
    path = write_val_tasks(data_dir, tmp_path / "test.json", split="test")
    with pytest.raises(ValidationError, match="not val-split tasks of glyphs 3-way 1-shot"):
        Validation.load(path, data_dir, "glyphs", 3, 1, 3, "cpu")


def fake_trials(folder, accuracies):
    files = []
    for k, accuracy in enumerate(accuracies):
        path = folder / f"trial{k}.json"
        io.write_json(path, {"run": {"dataset": "glyphs", "ways": 3, "shots": 1, "algorithm": "maml", "rule": "mlplr",
                                     "seed": 1},
                             "trial": k, "settings": {"lr_max": 1.0 + k}, "space": {}, "iterations": 3,
                             "validation": {"accuracy": {"mean": accuracy}}})
        files.append(path)
    return files


def test_selection_takes_the_best_trial_and_the_lower_index_on_ties(tmp_path):
    chosen = tune.select(fake_trials(tmp_path, [0.5, 0.7, 0.6, 0.7]), tmp_path / "chosen.json")
    assert (chosen["trial"], chosen["settings"], chosen["budget"]["trials"]) == (1, {"lr_max": 2.0}, 4)
    assert [t["sha256"] for t in chosen["trials"]] == [io.sha256_file(tmp_path / f"trial{k}.json") for k in range(4)]
    assert tune.load_chosen(tmp_path / "chosen.json", RUN)["settings"] == {"lr_max": 2.0}


def test_an_edited_or_foreign_tuning_result_is_refused(tmp_path):
    tune.select(fake_trials(tmp_path, [0.5, 0.7]), tmp_path / "chosen.json")
    with pytest.raises(ConfigError, match="is for .* not for run glyphs/3w1s/maml/fixed/seed1"):
        tune.load_chosen(tmp_path / "chosen.json", Run("glyphs", 3, 1, "maml", "fixed", 1))
    edited = io.read_json(tmp_path / "chosen.json")
    edited["settings"]["lr_max"] = 9.0
    io.write_json(tmp_path / "chosen.json", edited)
    with pytest.raises(io.HashMismatch, match="does not match its own sha256: it was edited or damaged; rerun its tune stage"):
        tune.load_chosen(tmp_path / "chosen.json", RUN)
    with pytest.raises(ConfigError, match="are not trials 0..1 of one run"):
        tune.select([tmp_path / "trial1.json", tmp_path / "trial1.json"], tmp_path / "again.json")


def test_tuned_runs_need_their_result_and_train_with_its_settings(data_dir, tmp_path):
    cfg = tuned_config()
    with pytest.raises(ConfigError, match="needs its tuning result"):
        tune.config_for_run(cfg, RUN, None)
    with pytest.raises(ConfigError, match="takes no tuning result"):
        tune.config_for_run(tiny_config(), RUN, tmp_path / "chosen.json")
    tune.select(fake_trials(tmp_path, [0.2, 0.9]), tmp_path / "chosen.json")
    train(cfg, RUN, data_dir, tmp_path / "model", tmp_path / "ckpt", progress=False, tuned=tmp_path / "chosen.json")
    model = read_torch(tmp_path / "model" / "model.pt", "retrain")
    assert model["tuning"]["sha256"] == io.read_json(tmp_path / "chosen.json")["sha256"]
    assert model["tuning"]["settings"] == {"lr_max": 2.0}
    # The identity keeps the config's values (what the workflow planned); the parameters are those of a run
    # configured with the chosen value, and not those of one with the config's own (a negative control).
    assert model["config"] == stages.settings("train", cfg, stages.run_job(RUN))
    assert cfg["rules"]["mlplr"]["lr_max"] != 2.0
    for lr_max, same in ((2.0, True), (cfg["rules"]["mlplr"]["lr_max"], False)):
        plain = tiny_config()
        plain["rules"]["mlplr"]["lr_max"] = lr_max
        out = tmp_path / f"plain-{lr_max}"
        train(plain, RUN, data_dir, out, tmp_path / f"ckpt-{lr_max}", progress=False)
        params = read_torch(out / "model.pt", "retrain")["params"]
        assert all(torch.equal(params[k], model["params"][k]) for k in params) == same


def noisy_copy(data_dir, out, noisy_split):
    """The same dataset with one split's images replaced by noise."""
    splits = {}
    rng = np.random.default_rng(7)
    for split in ("train", "val", "test"):
        arrays = load_split(data_dir, split)
        images = np.asarray(arrays.images)
        if split == noisy_split:
            images = rng.integers(0, 256, size=images.shape, dtype=np.uint8)
        splits[split] = (images, np.asarray(arrays.labels), list(arrays.classes))
    write_dataset(out, "glyphs", splits, source={"kind": "synthetic"})
    return out


def test_tuning_never_reads_the_test_split(data_dir, tmp_path, monkeypatch):
    """Replacing the test arrays with noise leaves every tuning output byte-identical (and a negative
    control: changing a validation array does not)."""
    cfg = tuned_config(trials=2)
    roots = {"clean": data_dir, "noisy_test": noisy_copy(data_dir, tmp_path / "data_test", "test"),
             "noisy_val": noisy_copy(data_dir, tmp_path / "data_val", "val")}
    assert (roots["noisy_test"] / "test_images.npy").read_bytes() != (data_dir / "test_images.npy").read_bytes()
    outputs = {}
    for name, root in roots.items():
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.chdir(folder)  # the outputs record relative paths, as in the workflow
        _, files = trial_results(cfg, root, Path("."))
        tune.select(files, Path("chosen.json"))
        # Every output but the trials' cost files (the seconds they took on this machine).
        outputs[name] = {p.name: p.read_bytes() for p in sorted(folder.glob("*.json")) if not p.name.endswith("-cost.json")}
    assert outputs["clean"] == outputs["noisy_test"] and len(outputs["clean"]) == 4  # val list, 2 trials, chosen
    assert all(outputs["clean"][name] != outputs["noisy_val"][name] for name in outputs["clean"])


def test_best_val_keeps_the_best_validated_iterate(data_dir, tmp_path):
    cfg = tiny_config(iterations=6, validate_every=1, select="best_val")
    val = Validation.load(write_val_tasks(data_dir, tmp_path / "val.json"), data_dir, "glyphs", 3, 1, 3, "cpu")
    fitted = fit(cfg, RUN, load_split(data_dir, "train"), tmp_path / "ckpt", progress=False, validation=val)
    curve = fitted.log["validation"]
    assert curve["iterations"] == [1, 2, 3, 4, 5, 6]
    best = curve["iterations"][int(np.argmax(curve["accuracy"]))]  # the first of equal maxima
    assert fitted.selected_iteration == fitted.log["selection"]["iteration"] == best
    # The kept parameters are the ones training had after `best` iterations (a shorter run gives them).
    short = fit(tiny_config(iterations=best), RUN, load_split(data_dir, "train"), tmp_path / "ckpt2", progress=False)
    assert all(torch.equal(fitted.params[k], short.params[k]) for k in short.params)
    last = fit(tiny_config(iterations=6, validate_every=1), RUN, load_split(data_dir, "train"), tmp_path / "ckpt3", progress=False,
               validation=val)
    assert last.selected_iteration == 6 and last.log["validation"] == curve  # validation changes no training step


class Killed(Exception):
    """Stands in for SIGKILL right after a checkpoint is written (test_resume kills a real process)."""


@pytest.mark.parametrize("drop_validation_state", [False, True], ids=["resumed", "negative-control"])
def test_a_killed_best_val_run_resumes_bitwise_identical(data_dir, tmp_path, monkeypatch, drop_validation_state):
    from metalr.train import checkpoint

    cfg = tiny_config(iterations=8, validate_every=1, select="best_val", checkpoint_every=4)
    val = write_val_tasks(data_dir, tmp_path / "val.json")
    train(cfg, RUN, data_dir, tmp_path / "whole", tmp_path / "whole.ckpt", progress=False, val_tasks=val)
    real_save = checkpoint.save

    def save_then_die(path, state):
        if drop_validation_state:  # what a checkpoint without the curve and the best iterate would resume from
            state = {**state, "validation": {"iterations": [], "accuracy": []},
                     "best": {"iteration": 0, "accuracy": -1.0, "trainable": None}}
        real_save(path, state)
        raise Killed

    monkeypatch.setattr(checkpoint, "save", save_then_die)
    with pytest.raises(Killed):
        train(cfg, RUN, data_dir, tmp_path / "killed", tmp_path / "killed.ckpt", progress=False, val_tasks=val)
    monkeypatch.setattr(checkpoint, "save", real_save)
    train(cfg, RUN, data_dir, tmp_path / "killed", tmp_path / "killed.ckpt", progress=False, val_tasks=val)
    same = [(tmp_path / "killed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
            for name in ("model.pt", "train_log.json", "lambdas.npy", "rates.json")]
    if drop_validation_state:
        assert not same[1]  # the validation curve before the kill is lost: the comparison above would see it
    else:
        assert all(same)


def test_the_tuning_report_lists_spaces_trials_choices_and_budget(data_dir, tmp_path):
    from metalr.report.tuning import build_tuning

    cfg = tuned_config(trials=2)
    folders = {}
    for rule in ("fixed", "mlplr"):
        folder = tmp_path / rule
        folder.mkdir()
        _, files = trial_results(cfg, data_dir, folder, rule=rule)
        tune.select(files, folder / "chosen.json")
        folders[rule] = folder
    chosen = [folders[r] / "chosen.json" for r in folders]
    trials = sorted(p for f in folders.values() for p in f.glob("trial?.json"))
    costs = sorted(p for f in folders.values() for p in f.glob("trial?-cost.json"))
    written = build_tuning(cfg, chosen, trials, costs, tmp_path / "out")
    assert [p.name for p in written] == ["tuning.tex", "tuning-macros.tex", "sensitivity.pdf"]
    text = (tmp_path / "out" / "tuning.tex").read_text()
    for expected in ("lr\\_max", "lr\\_min", "divergence", "kl\\_label\\_pred, kl\\_div\\_mean", "[0.001, 1]", "log"):
        assert expected in text, expected
    assert text.count("\\textbf{") == 2  # one chosen trial per (cell, algorithm, rule)
    macros = (tmp_path / "out" / "tuning-macros.tex").read_text()
    assert "\\newcommand{\\TuneTrials}{2}" in macros and "\\newcommand{\\TuneRuns}{4}" in macros
    assert (tmp_path / "out" / "sensitivity.pdf").read_bytes()[:4] == b"%PDF"
    # the hash chain: an edited trial file is refused, naming it and the stage to rerun
    edited = io.read_json(folders["mlplr"] / "trial0.json")
    edited["validation"]["accuracy"]["mean"] = 0.99
    io.write_json(folders["mlplr"] / "trial0.json", edited)
    with pytest.raises(io.HashMismatch, match=r"trial0.json differs from the sha256 .* rerun the tune stage"):
        build_tuning(cfg, chosen, trials, costs, tmp_path / "again")
