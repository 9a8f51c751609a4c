"""Config validation: bad keys and values fail up front, naming the key path and what is allowed."""
from __future__ import annotations

import pytest
import yaml

from metalr import config as config_mod
from metalr.algorithms import ALGORITHMS
from metalr.config import ConfigError, Run
from metalr.steprules import RULES


def write(tmp_path, data, name="override.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def load(tmp_path, override):
    return config_mod.load([config_mod.DEFAULT_CONFIG, write(tmp_path, override)])


@pytest.mark.parametrize("name", ["config.yaml", "quick.yaml", "extended.yaml"])
def test_shipped_configs_validate(name):
    files = [config_mod.DEFAULT_CONFIG] + ([config_mod.REPO_ROOT / "config" / name] if name != "config.yaml" else [])
    cfg = config_mod.load(files)
    assert config_mod.grid_runs(cfg)


def test_unknown_key_names_its_path_and_the_allowed_keys(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, {"train": {"iteratons": 5}})
    message = str(err.value)
    assert "train: unknown key(s) ['iteratons']" in message and "'iterations'" in message


@pytest.mark.parametrize("override,expected", [
    ({"grid": {"algorithms": ["maml", "mamll"]}}, f"grid.algorithms[1]: unknown algorithm 'mamll'; valid: {sorted(ALGORITHMS)}"),
    ({"grid": {"algorithms": ["maml", "reptile"], "rules": ["fixed", "lslr"]}},
     "grid.rules[1]: rule 'lslr' learns its rates from the meta-gradient, which algorithm 'reptile' (grid.algorithms[1])"),
    ({"grid": {"algorithms": ["imaml"], "rules": ["meta-sgd"]}},
     "grid.rules[0]: rule 'meta-sgd' learns its rates from the meta-gradient, which algorithm 'imaml' (grid.algorithms[0])"),
    ({"algorithms": {"imaml": {"lam": 0}}}, "algorithms.imaml.lam: 0 is less than or equal to the minimum of 0"),
    ({"grid": {"rules": ["nope"]}}, f"grid.rules[0]: unknown rule 'nope'; valid: {sorted(RULES)}"),
    ({"grid": {"datasets": ["imagenet"]}}, "grid.datasets[0]: unknown dataset 'imagenet'; valid: ['aircraft', 'cifar_fs', 'cub', 'glyphs', 'mini_imagenet', 'omniglot', 'stanford_dogs']"),
    ({"grid": {"shots": [0]}}, "grid.shots[0]: 0 is less than the minimum of 1"),
    ({"grid": {"ways": [1]}}, "grid.ways[0]: 1 is less than the minimum of 2"),
    ({"train": {"queries": -3}}, "train.queries: -3 is less than the minimum of 1"),
    ({"evaluate": {"split": "tset"}}, "evaluate.split: 'tset' is not allowed; allowed values: ['train', 'val', 'test']"),
    ({"evaluate": {"rules_at_train_steps": ["alpha"]}}, "evaluate.rules_at_train_steps[0]: unknown rule 'alpha'; valid: "),
    ({"rules": {"mlplr": {"lr_min": 3.0}}}, "rules.mlplr.lr_min (3.0) is larger than rules.mlplr.lr_max (1.0)"),
    ({"train": {"queries": 19}}, "train.queries: 5 shots + train.queries = 24 images per class"),
    ({"train": {"outer_lr": "fast"}}, "train.outer_lr: 'fast' is not of type 'number'"),
    ({"train": {"outer_lr_schedule": "cosine", "outer_lr_min": 0.1}},
     "train.outer_lr_min (0.1) is larger than train.outer_lr (0.001)"),
    ({"train": {"outer_lr_schedule": "step"}}, "train.outer_lr_schedule: 'step' is not allowed"),
])
def test_bad_values_fail_with_key_path(tmp_path, override, expected):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, override)
    assert expected in str(err.value)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config_mod.load([tmp_path / "nope.yaml"])


def test_later_files_override_earlier_ones_recursively(tmp_path):
    cfg = load(tmp_path, {"train": {"iterations": 7}})
    assert cfg["train"]["iterations"] == 7 and cfg["train"]["task_batch"] == 4


def test_run_id_round_trips():
    run = Run("glyphs", 5, 1, "maml", "mlplr", 1)
    assert run.run_id == "glyphs/5w1s/maml/mlplr/seed1"
    assert Run.parse(run.run_id) == run
    with pytest.raises(ConfigError, match="not of the form"):
        Run.parse("glyphs-maml")
