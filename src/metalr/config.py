"""Layered, validated configuration.

Configs are YAML files merged in order (later files override earlier ones, recursively, like
Snakemake's ``--configfile``), then validated against ``config/schema.yaml`` and against the code's
registries. Any error names the key path, what was wrong and what is allowed, before work starts.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import jsonschema
import yaml

from metalr import io

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "config" / "schema.yaml"
DEFAULT_CONFIG = REPO_ROOT / "config" / "config.yaml"


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range; the message names the key path."""


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict:
    """Recursive dict merge: mappings merge key by key, everything else is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def load(paths: Iterable[str | Path]) -> dict:
    """Merge the config files in order and validate the result."""
    cfg: dict = {}
    for path in paths:
        cfg = merge(cfg, read_yaml(path))
    validate(cfg)
    return cfg


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = ""
    for part in error.absolute_path:
        parts += f"[{part}]" if isinstance(part, int) else (f".{part}" if parts else str(part))
    return parts or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        return f"{where}: unknown key(s) {unknown}; allowed keys: {allowed}"
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not allowed; allowed values: {error.validator_value}"
    return f"{where}: {error.message}"


def _schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _check_names(cfg: Mapping[str, Any]) -> list[str]:
    # Imported here: the registries import torch, which the schema check alone does not need.
    from metalr.algorithms import ALGORITHMS
    from metalr.data.registry import DATASETS
    from metalr.steprules import RULES

    problems = []
    for key, registry in (("datasets", DATASETS), ("algorithms", ALGORITHMS), ("rules", RULES)):
        for index, name in enumerate(cfg["grid"][key]):
            if name not in registry:
                problems.append(f"grid.{key}[{index}]: unknown {key[:-1]} {name!r}; valid: {sorted(registry)}")
    for index, rule in enumerate(cfg["grid"]["rules"]):
        if rule in RULES and rule not in cfg["rules"]:
            problems.append(f"grid.rules[{index}]: rule {rule!r} has no settings under rules.{rule}")
    for key, registry in (("algorithms", ALGORITHMS), ("rules", RULES)):
        for index, name in enumerate(cfg["analysis"]["cost"][key]):
            if name not in registry:
                problems.append(f"analysis.cost.{key}[{index}]: unknown {key[:-1]} {name!r}; valid: {sorted(registry)}")
    fidelity_dataset = cfg["analysis"]["fidelity"]["dataset"]
    if fidelity_dataset not in DATASETS:
        problems.append(f"analysis.fidelity.dataset: unknown dataset {fidelity_dataset!r}; valid: {sorted(DATASETS)}")
    problems += _check_rule_meets_algorithm(cfg, ALGORITHMS, RULES)
    return problems


def _check_rule_meets_algorithm(cfg: Mapping[str, Any], algorithms: Mapping, rules: Mapping) -> list[str]:
    """Rules that learn their rates need an algorithm whose meta-gradient reaches them (not Reptile's)."""
    able = sorted(name for name, algorithm in algorithms.items() if algorithm.trains_rule_meta)
    problems = []
    for a_index, name in enumerate(cfg["grid"]["algorithms"]):
        if name not in algorithms or algorithms[name].trains_rule_meta:
            continue
        for r_index, rule in enumerate(cfg["grid"]["rules"]):
            if rule in rules and rules[rule].learned:
                problems.append(
                    f"grid.rules[{r_index}]: rule {rule!r} learns its rates from the meta-gradient, which algorithm "
                    f"{name!r} (grid.algorithms[{a_index}]) does not give them; pair it with one of {able} or "
                    f"use a rule without learned rates")
    return problems


def _check_values(cfg: Mapping[str, Any]) -> list[str]:
    from metalr.data.registry import DATASETS

    problems = []
    mlplr = cfg["rules"].get("mlplr")
    if mlplr and mlplr["lr_min"] > mlplr["lr_max"]:
        problems.append(
            f"rules.mlplr.lr_min ({mlplr['lr_min']}) is larger than rules.mlplr.lr_max ({mlplr['lr_max']}); "
            "set lr_min <= lr_max"
        )
    train = cfg["train"]
    if train["outer_lr_schedule"] == "cosine" and train["outer_lr_min"] > train["outer_lr"]:
        problems.append(f"train.outer_lr_min ({train['outer_lr_min']}) is larger than train.outer_lr "
                        f"({train['outer_lr']}); cosine annealing goes from outer_lr down to outer_lr_min")
    for dataset in cfg["grid"]["datasets"]:
        if dataset not in DATASETS:
            continue
        per_class = DATASETS[dataset].images_per_class(cfg)
        for stage in ("train", "evaluate"):
            needed = max(cfg["grid"]["shots"]) + cfg[stage]["queries"]
            if needed > per_class:
                problems.append(
                    f"{stage}.queries: max(grid.shots) + {stage}.queries = {needed} images per class, but "
                    f"{dataset} has only {per_class}; lower the shots or the queries"
                )
    return problems


def validate(cfg: Mapping[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe(e) for e in errors]
    if not problems:
        problems = _check_names(cfg) + _check_values(cfg)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


@dataclass(frozen=True, order=True)
class Run:
    """One cell of the grid: what is trained and evaluated."""

    dataset: str
    ways: int
    shots: int
    algorithm: str
    rule: str
    seed: int

    @property
    def cell(self) -> str:
        return f"{self.ways}w{self.shots}s"

    @property
    def name(self) -> str:
        return f"{self.algorithm}/{self.rule}/seed{self.seed}"

    @property
    def run_id(self) -> str:
        return f"{self.dataset}/{self.cell}/{self.name}"

    def as_dict(self, experiment: str) -> dict:
        return {"experiment": experiment, **asdict(self), "run_id": self.run_id}

    @classmethod
    def parse(cls, run_id: str) -> "Run":
        """Inverse of ``run_id``: 'glyphs/5w1s/maml/mlplr/seed1'."""
        try:
            dataset, cell, algorithm, rule, seed = run_id.split("/")
            ways, shots = cell.removesuffix("s").split("w")
            return cls(dataset, int(ways), int(shots), algorithm, rule, int(seed.removeprefix("seed")))
        except ValueError as exc:
            raise ConfigError(
                f"run id {run_id!r} is not of the form <dataset>/<ways>w<shots>s/<algorithm>/<rule>/seed<seed>"
            ) from exc


def grid_runs(cfg: Mapping[str, Any]) -> list[Run]:
    g = cfg["grid"]
    return sorted(
        Run(d, w, s, a, r, seed)
        for d in g["datasets"] for w in g["ways"] for s in g["shots"]
        for a in g["algorithms"] for r in g["rules"] for seed in g["seeds"]
    )


def check_run_in_grid(cfg: Mapping[str, Any], run: Run) -> None:
    if run not in grid_runs(cfg):
        raise ConfigError(f"run {run.run_id} is not in the config's grid (grid.* keys); valid runs: "
                          f"{[r.run_id for r in grid_runs(cfg)]}")


def train_slice(cfg: Mapping[str, Any], run: Run) -> dict:
    """The config values a training run depends on (and nothing else): its digest triggers reruns."""
    return {
        "run": asdict(run),
        "data": {run.dataset: cfg["data"].get(run.dataset)},
        "model": cfg["model"],
        "algorithm": cfg["algorithms"].get(run.algorithm),
        "rule": cfg["rules"][run.rule],
        "train": cfg["train"],
        "deterministic": cfg["deterministic"],
    }


def tasks_slice(cfg: Mapping[str, Any], dataset: str, ways: int, shots: int) -> dict:
    ev = cfg["evaluate"]
    return {
        "dataset": dataset, "data": cfg["data"].get(dataset), "ways": ways, "shots": shots,
        "queries": ev["queries"], "tasks": ev["tasks"], "split": ev["split"], "task_seed": ev["task_seed"],
    }


def evaluate_slice(cfg: Mapping[str, Any], run: Run) -> dict:
    return {"train": train_slice(cfg, run), "evaluate": cfg["evaluate"]}


def digest(obj: Any) -> str:
    return io.sha256_json(obj)[:16]
