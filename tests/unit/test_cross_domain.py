"""Cross-domain evaluation (the paper's Table 3) and grids of several blocks (its Figure 3)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metalr import cli
from metalr import config as config_mod
from metalr import io, stages
from metalr.algorithms import get_algorithm
from metalr.config import ConfigError, Run
from metalr.data.arrays import load_split, write_dataset
from metalr.data.episodes import Episode, episode_tensors, make_task_list, unseen_by_record
from metalr.evaluate.evaluate import evaluate
from metalr.models import get_backbone
from metalr.steprules import make_rule
from metalr.train.loop import train
from tests.unit.synthetic import write_blobs, write_config

RUN = Run("glyphs", 3, 1, "maml", "mlplr", 1)


def tiny_config(**top) -> dict:
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG])
    cfg.update(experiment="unit", **top)
    cfg["model"]["filters"] = 4
    cfg["grid"].update(algorithms=["maml"], rules=["mlplr"], ways=[3], shots=[1])
    cfg["train"].update({"iterations": 4, "inner_steps": 2, "queries": 2, "log_every": 2, "checkpoint_every": 4})
    cfg["evaluate"].update({"tasks": 12, "inner_steps": 3, "queries": 3})
    return cfg


def copy_as(source: Path, dest: Path, dataset: str, transform=lambda images: images) -> Path:
    """``source``'s splits written as another dataset, images passed through ``transform``."""
    splits = {}
    for name in ("train", "val", "test"):
        split = load_split(source, name)
        splits[name] = (transform(np.asarray(split.images)), np.asarray(split.labels), split.classes)
    write_dataset(dest, dataset, splits, source={"kind": "synthetic", "from": str(source)})
    return dest


@pytest.fixture(scope="module", params=["conv4", "resnet12"])
def trained(tmp_path_factory, request):
    """A model trained on the synthetic glyphs with each backbone (model.name)."""
    root = tmp_path_factory.mktemp("cross")
    data = write_blobs(root / "glyphs")
    cfg = tiny_config()
    cfg["model"]["name"] = request.param
    train(cfg, RUN, data, root / "model", root / "ckpt", progress=False)
    return root, data, cfg


def task_list_for(data_dir: Path, dataset: str, path: Path, trained_on: Path | None = None) -> Path:
    """Test tasks of ``data_dir``; for a model trained on ``trained_on`` (another dataset), a cross-domain list."""
    split = load_split(data_dir, "test")
    unseen_by = None if trained_on is None else unseen_by_record(
        split.classes, "glyphs", load_split(trained_on, "train").classes, io.sha256_file(trained_on / "manifest.json"))
    tasks = make_task_list(split, dataset=dataset, split_name="test", ways=3, shots=1, queries=3, tasks=12, seed=1,
                           source_manifest_sha256=io.sha256_file(data_dir / "manifest.json"), unseen_by=unseen_by)
    io.write_json(path, tasks)
    return path


def test_the_model_is_the_configured_backbone(trained):
    root, _, cfg = trained
    params = torch.load(root / "model" / "model.pt", weights_only=True)["params"]
    expected = get_backbone(cfg["model"]["name"]).init(torch.Generator(), 1, 16, 3, cfg["model"]["filters"])
    assert {k: v.shape for k, v in params.items()} == {k: v.shape for k, v in expected.items()}


def test_same_images_under_another_name_score_exactly_like_in_domain(trained, tmp_path):
    root, data, cfg = trained
    other = copy_as(data, tmp_path / "omniglot", "omniglot")
    in_domain = evaluate(cfg, RUN, root / "model" / "model.pt", task_list_for(data, "glyphs", tmp_path / "a.json"),
                         data, tmp_path / "in.json", progress=False)
    cross = evaluate(cfg, RUN, root / "model" / "model.pt", task_list_for(other, "omniglot", tmp_path / "b.json", data),
                     other, tmp_path / "cross.json", progress=False, test_dataset="omniglot")
    assert cross["per_task_accuracy"] == in_domain["per_task_accuracy"]
    assert in_domain["evaluation"]["dataset"] == "glyphs" and cross["evaluation"]["dataset"] == "omniglot"
    assert cross["run"] == in_domain["run"]  # the trained run; the test dataset is recorded beside it


def test_larger_test_images_are_resized_to_the_training_resolution(trained, tmp_path):
    root, data, cfg = trained
    upscale = lambda images: np.repeat(np.repeat(images, 2, axis=2), 2, axis=3)  # noqa: E731  16x16 -> 32x32
    big = copy_as(data, tmp_path / "omniglot", "omniglot", upscale)
    tasks = task_list_for(big, "omniglot", tmp_path / "tasks.json", data)
    metrics = evaluate(cfg, RUN, root / "model" / "model.pt", tasks, big, tmp_path / "m.json", progress=False,
                       test_dataset="omniglot")
    assert metrics["evaluation"]["image_shape"] == [1, 32, 32] and metrics["evaluation"]["resized_to"] == [1, 16, 16]

    # independent check: adapt on images resized by hand, task by task
    model = torch.load(root / "model" / "model.pt", weights_only=True)
    algorithm = get_algorithm("maml", cfg["algorithms"], get_backbone(cfg["model"]["name"]))
    rule = make_rule("mlplr", cfg["rules"])
    split = load_split(big, "test")
    expected = []
    for episode in io.read_json(tasks)["episodes"]:
        task = episode_tensors(split, Episode.from_dict(episode))
        down = lambda x: F.interpolate(x, size=(16, 16), mode="bilinear", antialias=True)  # noqa: E731
        task = type(task)(down(task.xs), task.ys, down(task.xq), task.yq)
        with torch.no_grad():
            result = algorithm.task_result(model["params"], model["meta"], rule, task, 3, training=False)
        expected.append(round(float(result.query_accuracy), 6))
    assert metrics["per_task_accuracy"] == expected


def test_a_different_channel_count_is_refused_with_both_datasets_named(trained, tmp_path):
    root, data, cfg = trained
    rgb = copy_as(data, tmp_path / "cub", "cub", lambda images: np.repeat(images, 3, axis=1))
    with pytest.raises(ConfigError, match=r"cub images have 3 channel\(s\), the model trained on glyphs expects 1"):
        evaluate(cfg, RUN, root / "model" / "model.pt", task_list_for(rgb, "cub", tmp_path / "t.json", data), rgb,
                 tmp_path / "m.json", progress=False, test_dataset="cub")
    assert not (tmp_path / "m.json").exists()


def test_a_task_list_of_another_dataset_is_refused(trained, tmp_path):
    root, data, cfg = trained
    with pytest.raises(ConfigError, match="is for glyphs 3-way 1-shot, not for run .* tested on omniglot"):
        evaluate(cfg, RUN, root / "model" / "model.pt", task_list_for(data, "glyphs", tmp_path / "t.json"), data,
                 tmp_path / "m.json", progress=False, test_dataset="omniglot")


def cross(train="glyphs", test=("omniglot",), ways=(5,), shots=(1,)) -> dict:
    return {"train": train, "test": list(test), "ways": list(ways), "shots": list(shots)}


def validated(**sections) -> dict:
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG])
    for key, value in sections.items():
        cfg[key] = config_mod.merge(cfg[key], value) if isinstance(value, dict) else value
    config_mod.validate(cfg)
    return cfg


def test_cross_domain_evaluations_pair_every_method_of_the_cell_with_every_test_dataset():
    cfg = validated(cross_domain=[cross(test=["omniglot", "cub"], shots=[5])])
    evaluations = config_mod.cross_domain_evaluations(cfg)
    methods = {(a, r) for a in cfg["grid"]["algorithms"] for r in cfg["grid"]["rules"]}
    assert len(evaluations) == 2 * len(methods)
    assert {(run.algorithm, run.rule) for run, _ in evaluations} == methods
    assert all(run.dataset == "glyphs" and run.shots == 5 for run, _ in evaluations)
    assert config_mod.grid_datasets(cfg) == ["cub", "glyphs", "omniglot"]
    files = stages.all_metrics_files(cfg)
    assert len(files) == len(set(files)) == len(config_mod.grid_runs(cfg)) + len(evaluations)


@pytest.mark.parametrize("block, message", [
    (cross(test=["mnist"]), "cross_domain[0].test[0]: unknown dataset 'mnist'"),
    (cross(test=["glyphs"]), "cross_domain[0].test[0]: 'glyphs' is the training dataset"),
    (cross(ways=[10]), "cross_domain[0]: no run of the grid trains on ['glyphs 10-way 1-shot']"),
    (cross(shots=[18]), "evaluate.queries: 18 shots + evaluate.queries = 33 images per class, but omniglot has only 20"),
])
def test_bad_cross_domain_blocks_are_named(block, message):
    with pytest.raises(ConfigError) as error:
        validated(cross_domain=[block])
    assert message in str(error.value)


def test_extra_grid_blocks_inherit_the_other_keys_and_are_validated_by_their_own_location():
    cfg = validated(grid={"extra": [{"ways": [10, 15]}]})
    runs = config_mod.grid_runs(cfg)
    per_ways = {w: sum(r.ways == w for r in runs) for w in (5, 10, 15)}
    assert per_ways[5] == per_ways[10] == per_ways[15] == len(runs) // 3  # same methods, shots, seeds
    with pytest.raises(ConfigError, match=r"grid.extra\[0\].rules\[0\]: unknown rule 'adam'"):
        validated(grid={"extra": [{"rules": ["adam"]}]})
    with pytest.raises(ConfigError, match=r"grid.extra\[0\]: \{\} should be non-empty"):
        validated(grid={"extra": [{}]})


def test_cli_refuses_a_test_dataset_outside_the_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_blobs(tmp_path / "data" / "glyphs")
    write_config(tmp_path, tmp_path / "data")
    code = cli.main(["evaluate", "--configfile", "tiny.yaml", "--run", "glyphs/3w1s/maml/mlplr/seed1",
                     "--test-dataset", "omniglot", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "evaluating run glyphs/3w1s/maml/mlplr/seed1 on 'omniglot' is not a cross_domain evaluation" in err
    assert not (tmp_path / "results").exists()


def test_cli_evaluates_across_domains_into_its_own_metrics_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_blobs(tmp_path / "data" / "glyphs")
    copy_as(tmp_path / "data" / "glyphs", tmp_path / "data" / "omniglot", "omniglot")
    write_config(tmp_path, tmp_path / "data", cross_domain=[cross(ways=[3])])
    args = ["--configfile", "tiny.yaml"]
    run_id = "glyphs/3w1s/maml/mlplr/seed1"
    assert cli.main(["train", *args, "--run", run_id, "--no-progress"]) == 0
    assert cli.main(["tasks", *args, "--dataset", "omniglot", "--ways", "3", "--shots", "1",
                     "--unseen-by", "glyphs"]) == 0
    assert cli.main(["evaluate", *args, "--run", run_id, "--test-dataset", "omniglot", "--no-progress"]) == 0
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG, tmp_path / "tiny.yaml"])
    out = stages.cross_domain_metrics_file(cfg, Run.parse(run_id), "omniglot")
    assert io.read_json(out)["evaluation"]["dataset"] == "omniglot"
    assert not stages.metrics_file(cfg, Run.parse(run_id)).exists()
