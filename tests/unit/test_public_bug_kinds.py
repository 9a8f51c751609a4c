"""Kinds of failure from public bug reports of few-shot projects (issue 13, item 7): cross-domain class leakage,
NaN/inf during evaluation, unreadable source images."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from metalr import cli, io, stages
from metalr import config as config_mod
from metalr.data import images, mini_imagenet, omniglot
from metalr.data.arrays import write_dataset
from metalr.evaluate import evaluate as evaluate_mod
from metalr.steprules import make_rule
from metalr.train import checkpoint
from tests.unit.synthetic import RUN_ID, tiny_project, write_config
from tests.unit.test_mini_imagenet import data_cfg, ilsvrc_members, tiny_split  # noqa: F401 (fixture)

SEEN = ["n02089867", "n02105505", "n02108089"]  # DN4 test breeds that are miniImageNet meta-train classes


def write_named(out: Path, dataset: str, classes: dict[str, list[str]], seed: int) -> None:
    """A dataset whose classes carry the given names; 8 learnable 16x16 images per class (a bright square)."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split, names in classes.items():
        labels = np.repeat(np.arange(len(names)), 8)
        pictures = rng.integers(0, 40, size=(len(labels), 1, 16, 16), dtype=np.uint8)
        for i, c in enumerate(labels):
            r, col = divmod(c % 16, 4)
            pictures[i, 0, r * 4:(r + 1) * 4, col * 4:(col + 1) * 4] = 255
        splits[split] = (pictures, labels, names)
    write_dataset(out, dataset, splits, source={"kind": "synthetic"})


@pytest.fixture
def cross(tmp_path, monkeypatch):
    """miniImageNet-like training data whose meta-train split holds three of the dog breeds tested on."""
    monkeypatch.chdir(tmp_path)
    write_named(tmp_path / "data" / "mini_imagenet", "mini_imagenet", {
        "train": SEEN + [f"n0{i}000000" for i in range(1, 6)], "val": ["n07000001", "n07000002", "n07000003"],
        "test": ["n08000001", "n08000002", "n08000003"]}, seed=0)
    dogs_test = [f"{w}-dog" for w in SEEN] + [f"n0209{i:04d}-breed{i}" for i in range(4)]
    write_named(tmp_path / "data" / "stanford_dogs", "stanford_dogs", {
        "train": ["n02111111-a", "n02111112-b", "n02111113-c"], "val": ["n02111114-d", "n02111115-e", "n02111116-f"],
        "test": dogs_test}, seed=1)
    write_config(tmp_path, Path("data"), grid={"datasets": ["mini_imagenet"]},
                 cross_domain=[{"train": "mini_imagenet", "test": ["stanford_dogs"], "ways": [3], "shots": [1]}])
    run_id = RUN_ID.replace("glyphs", "mini_imagenet")
    assert cli.main(["train", "--configfile", "tiny.yaml", "--run", run_id, "--no-progress"]) == 0
    return tmp_path, run_id, dogs_test


def test_cross_domain_tasks_leave_out_the_classes_the_training_set_meta_trained_on(cross, capsys):
    root, run_id, dogs_test = cross
    args = ["--configfile", "tiny.yaml", "--dataset", "stanford_dogs", "--ways", "3", "--shots", "1"]
    assert cli.main(["tasks", *args, "--unseen-by", "mini_imagenet"]) == 0
    assert "3 test classes seen by mini_imagenet left out" in capsys.readouterr().out
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG, root / "tiny.yaml"])
    task_list = io.read_json(stages.cross_domain_tasks_file(cfg, "mini_imagenet", "stanford_dogs", 3, 1))
    unseen = task_list["unseen_by"]
    assert [e["wordnet_id"] for e in unseen["excluded"]] == SEEN
    assert (unseen["classes_total"], unseen["classes_remaining"]) == (7, 4)
    used = {c for episode in task_list["episodes"] for c in episode["classes"]}
    assert used == {3, 4, 5, 6}  # every remaining class is drawn, never a seen one

    assert cli.main(["evaluate", "--configfile", "tiny.yaml", "--run", run_id, "--test-dataset", "stanford_dogs",
                     "--no-progress"]) == 0
    metrics = io.read_json(stages.cross_domain_metrics_file(cfg, config_mod.Run.parse(run_id), "stanford_dogs"))
    assert metrics["evaluation"]["unseen_by"]["classes_remaining"] == 4
    assert [e["class"] for e in metrics["evaluation"]["unseen_by"]["excluded"]] == dogs_test[:3]


def test_a_cross_domain_evaluation_on_every_test_class_is_refused(cross, capsys):
    root, run_id, _ = cross
    assert cli.main(["tasks", "--configfile", "tiny.yaml", "--dataset", "stanford_dogs", "--ways", "3", "--shots", "1",
                     "--out", "all_classes.json"]) == 0
    code = cli.main(["evaluate", "--configfile", "tiny.yaml", "--run", run_id, "--test-dataset", "stanford_dogs",
                     "--tasks", "all_classes.json", "--out", "m.json", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "task list all_classes.json does not leave out the test classes that mini_imagenet" in err
    assert "--unseen-by mini_imagenet" in err and not (root / "m.json").exists()


def test_nan_during_evaluation_stops_naming_run_task_and_step_and_writes_no_metrics(tmp_path, blobs_root, capsys,
                                                                                   monkeypatch):
    project = tiny_project(tmp_path / "project", blobs_root)
    monkeypatch.chdir(project)
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG, project / "tiny.yaml"])
    metrics = stages.metrics_file(cfg, config_mod.Run.parse(RUN_ID))
    metrics.unlink()

    def nan_at_the_second_step(name, settings):
        rule = make_rule(name, settings)
        real_rates = rule.rates

        def rates(meta, params, grads, index, support, state):
            out = real_rates(meta, params, grads, index, support, state)
            return dataclasses.replace(out, rates=out.rates * float("nan")) if index == 1 else out
        rule.rates = rates
        return rule

    monkeypatch.setattr(evaluate_mod, "make_rule", nan_at_the_second_step)
    code = cli.main(["evaluate", "--configfile", "tiny.yaml", "--run", RUN_ID, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"evaluation of run {RUN_ID} on glyphs stopped at task 1 of 12" in err and "inner step 2 of 3" in err
    assert "No metrics were written" in err and not metrics.exists()


def test_an_unreadable_image_is_named_by_its_class_and_file(tmp_path, tiny_split):  # noqa: F811
    for name, data in ilsvrc_members().items():
        (tmp_path / "train" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "train" / name).write_bytes(data[: len(data) // 2] if name == "n02/n02_12.JPEG" else data)
    with pytest.raises(images.UnreadableImage) as error:
        mini_imagenet.build(tmp_path / "out", data_cfg(tmp_path, ilsvrc=tmp_path / "train"), progress=False)
    message = str(error.value)
    assert message.startswith("image n02/n02_12.JPEG cannot be read") and "truncated or damaged" in message
    assert "rerun the data stage" in message and not (tmp_path / "out").exists()
    png = tmp_path / "Latin" / "character01" / "0101_01.png"
    png.parent.mkdir(parents=True)
    png.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(images.UnreadableImage, match=r"^image character01/0101_01.png cannot be read"):
        omniglot.load_image(png, 28)


def test_a_model_with_inf_weights_is_stopped_too(tmp_path, blobs_root, monkeypatch, capsys):
    """A real model whose head overflowed: every query logit is inf, caught at the first inner step."""
    project = tiny_project(tmp_path / "project", blobs_root)
    monkeypatch.chdir(project)
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG, project / "tiny.yaml"])
    run = config_mod.Run.parse(RUN_ID)
    model_path = stages.model_dir(cfg, run) / "model.pt"
    model = torch.load(model_path, weights_only=True)
    model["params"]["head.weight"] = torch.full_like(model["params"]["head.weight"], float("inf"))
    sha = checkpoint.write_torch(model_path, model)  # as training would have recorded it
    log = model_path.parent / "train_log.json"
    io.write_json(log, {**io.read_json(log), "model_sha256": sha})
    stages.metrics_file(cfg, run).unlink()
    assert cli.main(["evaluate", "--configfile", "tiny.yaml", "--run", RUN_ID, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "stopped at task 1 of 12" in err and "inner step 1 of 3" in err
    assert not stages.metrics_file(cfg, run).exists()
