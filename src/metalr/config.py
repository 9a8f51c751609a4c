"""Layered, validated configuration.

Configs are YAML files merged in order (later files override earlier ones, recursively, like
Snakemake's ``--configfile``), then validated against ``config/schema.yaml`` and against the code's
registries. Any error names the key path, what was wrong and what is allowed, before work starts.
"""
from __future__ import annotations

import copy
import dataclasses
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


def project_root(start: Path | None = None) -> Path:
    """The project metalr runs in: the nearest folder at or above ``start`` (default: the working
    directory) that holds ``config/config.yaml`` and a ``Snakefile``; the checkout holding this
    package when there is none. Two checkouts sharing one virtualenv each read their own config."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "config" / "config.yaml").is_file() and (folder / "Snakefile").is_file():
            return folder
    return REPO_ROOT


def default_config(start: Path | None = None) -> Path:
    """``config/config.yaml`` of the project metalr runs in (``project_root``)."""
    return project_root(start) / "config" / "config.yaml"


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key, (str, int, float, bool)):
                continue  # merge keys may repeat; unhashable keys are refused by the base class
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise ConfigError(f"{key_node.start_mark.name}, line {line}: key {key!r} is given twice in one "
                                  f"mapping (first at line {first_line[key]}), and YAML would keep only the "
                                  f"last; merge the two into one")
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


UNTUNED_SUFFIX = "-untuned"  # a rule run at its configured values beside its tuned runs (tune.untuned_baseline)


def is_untuned(rule: str) -> bool:
    return rule.endswith(UNTUNED_SUFFIX)


def base_rule(rule: str) -> str:
    """The registered rule of a grid rule name: 'mlplr' for 'mlplr' and for its untuned baseline 'mlplr-untuned'."""
    return rule.removesuffix(UNTUNED_SUFFIX)


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict:
    """Recursive dict merge: mappings merge key by key, everything else is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class Overlay(Mapping):
    """``base`` with some of its keys' values replaced, read through without a copy: a job that reads the
    overlay reads exactly the keys of ``base`` it asks for (what metalr.stages declares per stage), and the
    replaced values. Nested replacements are Overlays themselves (``overlay``)."""

    def __init__(self, base: Mapping[str, Any], replaced: Mapping[str, Any]):
        self._base, self._replaced = base, dict(replaced)

    def __getitem__(self, key: str) -> Any:
        return self._replaced[key] if key in self._replaced else self._base[key]

    def __iter__(self):
        return iter(self._base)

    def __len__(self) -> int:
        return len(self._base)


def overlay(base: Mapping[str, Any], replaced: Mapping[str, Any]) -> Overlay:
    """``base`` with the (nested) values of ``replaced`` in place of its own: {"rules": {"mlplr": {"lr_max": 2}}}
    replaces one setting, and every other value is read from ``base``."""
    return Overlay(base, {key: overlay(base[key], value) if isinstance(value, Mapping) and isinstance(base.get(key), Mapping)
                          else value for key, value in replaced.items()})


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    with open(path, encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=UniqueKeyLoader) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def has_key(data: Any, parts: list[str]) -> bool:
    """Whether the nested mapping ``data`` holds the key path ``parts`` (e.g. ``["train", "threads"]``)."""
    for part in parts:
        if not isinstance(data, Mapping) or part not in data:
            return False
        data = data[part]
    return True


def plugin_defaults() -> dict:
    """The defaults of every plug-in setting, from the plug-ins' SPECs: ``rules.*`` and ``algorithms.*``."""
    from metalr.algorithms import ALGORITHMS
    from metalr.steprules import RULES

    return {"rules": RULES.defaults(), "algorithms": ALGORITHMS.defaults()}


def resolve(raw: Mapping[str, Any]) -> dict:
    """``raw`` (merged config files) over the plug-in defaults, validated."""
    cfg = merge(plugin_defaults(), raw)
    validate(cfg)
    return cfg


def load(paths: Iterable[str | Path]) -> dict:
    """Merge the config files in order over the plug-in defaults and validate the result."""
    cfg: dict = {}
    for path in paths:
        cfg = merge(cfg, read_yaml(path))
    return resolve(cfg)


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


def _strict_integer(checker: Any, instance: Any) -> bool:
    """An integer as Python types it: jsonschema's own check also accepts 5.0, which then names runs '5.0w1s'."""
    return isinstance(instance, int) and not isinstance(instance, bool)


StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer))
BACKBONE_KEYS = (("model", "name"), ("analysis", "cost", "backbone"), ("analysis", "scaling", "backbone"))


def _schema() -> dict:
    """config/schema.yaml, with the ``rules`` and ``algorithms`` sections generated from the plug-ins' SPECs
    and the backbone names (``BACKBONE_KEYS``) from the backbone registry."""
    from metalr.algorithms import ALGORITHMS
    from metalr.models import BACKBONES
    from metalr.steprules import RULES

    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        schema = yaml.safe_load(fh)
    schema["properties"]["rules"] = RULES.settings_schema()
    schema["properties"]["algorithms"] = ALGORITHMS.settings_schema()
    for *section, key in BACKBONE_KEYS:
        node = schema
        for part in section:
            node = node["properties"][part]
        node["properties"][key] = {"enum": sorted(BACKBONES)}
    return schema


def _check_names(cfg: Mapping[str, Any]) -> list[str]:
    from metalr.algorithms import ALGORITHMS
    from metalr.data.registry import DATASETS
    from metalr.steprules import RULES

    problems = []
    for where, block in grid_blocks(cfg):
        for key, registry in (("datasets", DATASETS), ("algorithms", ALGORITHMS), ("rules", RULES)):
            for index, name in enumerate(block[key]):
                if name not in registry:
                    problems.append(f"{where}.{key}[{index}]: unknown {key[:-1]} {name!r}; valid: {sorted(registry)}")
        problems += _check_rule_meets_algorithm(where, block, ALGORITHMS, RULES)
        problems += _check_batching(where, block, cfg["compute"]["batching"], ALGORITHMS)
        problems += _check_grad_through_lr(where, block, cfg["rules"], ALGORITHMS)
    for index, name in enumerate(cfg["analysis"]["scaling"]["algorithms"]):
        if name not in ALGORITHMS:
            problems.append(f"analysis.scaling.algorithms[{index}]: unknown algorithm {name!r}; valid: {sorted(ALGORITHMS)}")
    for key, registry in (("algorithms", ALGORITHMS), ("rules", RULES)):
        for index, name in enumerate(cfg["analysis"]["cost"][key]):
            if name not in registry:
                problems.append(f"analysis.cost.{key}[{index}]: unknown {key[:-1]} {name!r}; valid: {sorted(registry)}")
    for index, name in enumerate(cfg["evaluate"]["rules_at_train_steps"]):
        if name not in RULES:
            problems.append(f"evaluate.rules_at_train_steps[{index}]: unknown rule {name!r}; valid: {sorted(RULES)}")
    fidelity_dataset = cfg["analysis"]["fidelity"]["dataset"]
    if fidelity_dataset not in DATASETS:
        problems.append(f"analysis.fidelity.dataset: unknown dataset {fidelity_dataset!r}; valid: {sorted(DATASETS)}")
    problems += _check_cross_domain(cfg, DATASETS)
    return list(dict.fromkeys(problems))  # a key inherited by extra blocks is reported once


def _check_batching(where: str, block: Mapping[str, Any], batching: str, algorithms: Mapping) -> list[str]:
    """``compute.batching: vmap`` forces batched training: every algorithm in the grid must support it."""
    if batching != "vmap":
        return []
    return [f"compute.batching: 'vmap' cannot run algorithm {name!r} ({where}.algorithms[{index}]), whose training "
            f"step does not run under torch.func.vmap; use 'auto' (it falls back to the per-task loop for "
            f"{name!r}) or 'loop'"
            for index, name in enumerate(block["algorithms"])
            if name in algorithms and not algorithms[name].flag("batches_training")]


def _check_rule_meets_algorithm(where: str, block: Mapping[str, Any], algorithms: Mapping,
                                rules: Mapping) -> list[str]:
    """Rules that learn their rates need an algorithm whose meta-gradient reaches them (not Reptile's)."""
    able = sorted(name for name, algorithm in algorithms.items() if algorithm.flag("trains_rule_meta"))
    problems = []
    for a_index, name in enumerate(block["algorithms"]):
        if name not in algorithms or algorithms[name].flag("trains_rule_meta"):
            continue
        for r_index, rule in enumerate(block["rules"]):
            if rule in rules and rules[rule].flag("learned"):
                problems.append(
                    f"{where}.rules[{r_index}]: rule {rule!r} learns its rates from the meta-gradient, which "
                    f"algorithm {name!r} ({where}.algorithms[{a_index}]) does not give them; pair it with one of "
                    f"{able} or use a rule without learned rates")
    return problems


def _check_grad_through_lr(where: str, block: Mapping[str, Any], rules: Mapping[str, Any],
                           algorithms: Mapping) -> list[str]:
    """``rules.mlplr.grad_through_lr: true`` needs a meta-gradient that differentiates through the inner loop:
    FOMAML detaches it, Reptile and iMAML never take it, so there the setting would silently do nothing."""
    if "mlplr" not in block["rules"] or not rules.get("mlplr", {}).get("grad_through_lr"):
        return []
    return [f"rules.mlplr.grad_through_lr: true has no effect with algorithm {name!r} ({where}.algorithms[{index}]), "
            f"whose meta-gradient does not differentiate through the inner loop; set it to false, or run mlplr "
            f"with a second-order algorithm (maml, anil) only"
            for index, name in enumerate(block["algorithms"])
            if name in algorithms and not algorithms[name].flag("differentiates_inner_loop")]


def _check_cross_domain(cfg: Mapping[str, Any], datasets: Mapping) -> list[str]:
    problems = []
    trained = {(r.dataset, r.ways, r.shots) for r in grid_runs(cfg)}
    for index, block in enumerate(cfg["cross_domain"]):
        where = f"cross_domain[{index}]"
        for t_index, test in enumerate(block["test"]):
            if test not in datasets:
                problems.append(f"{where}.test[{t_index}]: unknown dataset {test!r}; valid: {sorted(datasets)}")
            elif test == block["train"]:
                problems.append(f"{where}.test[{t_index}]: {test!r} is the training dataset; in-domain "
                                "evaluation already comes with every run of the grid")
        missing = sorted((block["train"], w, s) for w in block["ways"] for s in block["shots"]
                         if (block["train"], w, s) not in trained)
        if missing:
            problems.append(f"{where}: no run of the grid trains on {[f'{d} {w}-way {s}-shot' for d, w, s in missing]}; "
                            "add them to grid (or grid.extra) or remove them here")
    return problems


def _check_values(cfg: Mapping[str, Any]) -> list[str]:
    from metalr.data.registry import DATASETS

    problems = []
    from metalr.steprules import RULES

    for name, settings in cfg["rules"].items():
        problems += [f"rules.{name}.{low} ({settings[low]}) is larger than rules.{name}.{high} ({settings[high]}); "
                     f"set {low} <= {high}" for low, high in RULES[name].violations(settings)]
    problems += _check_tuning(cfg)
    train = cfg["train"]
    if train["outer_lr_schedule"] == "cosine" and train["outer_lr_min"] > train["outer_lr"]:
        problems.append(f"train.outer_lr_min ({train['outer_lr_min']}) is larger than train.outer_lr "
                        f"({train['outer_lr']}); cosine annealing goes from outer_lr down to outer_lr_min")
    shots_needed: dict[tuple[str, str], int] = {}  # (stage, dataset) -> most shots asked of it
    for run in grid_runs(cfg):
        for stage in ("train", "evaluate"):
            key = (stage, run.dataset)
            shots_needed[key] = max(shots_needed.get(key, 0), run.shots)
    for _, test, _, shots in cross_domain_cells(cfg):
        shots_needed[("evaluate", test)] = max(shots_needed.get(("evaluate", test), 0), shots)
    for (stage, dataset), shots in sorted(shots_needed.items()):
        if dataset not in DATASETS:
            continue
        per_class = DATASETS[dataset].images_per_class(cfg)
        needed = shots + cfg[stage]["queries"]
        if needed > per_class:
            problems.append(
                f"{stage}.queries: {shots} shots + {stage}.queries = {needed} images per class, but "
                f"{dataset} has only {per_class}; lower the shots or the queries"
            )
    return problems


def _task_demands(cfg: Mapping[str, Any]) -> list[tuple[str, str, str, str, int, int]]:
    """(config location, config section of its queries, dataset, split, ways, shots) of every kind of task
    the config samples: training tasks, test tasks and, when the experiment validates, validation tasks."""
    blocks = [(where, b["datasets"], b["ways"], b["shots"]) for where, b in grid_blocks(cfg)]
    cross = [(f"cross_domain[{i}]", b["test"], b["ways"], b["shots"]) for i, b in enumerate(cfg["cross_domain"])]
    kinds = [("train", "train"), ("evaluate", cfg["evaluate"]["split"])]
    if needs_validation(cfg):
        kinds.append(("evaluate", "val"))
    return [(where, section, dataset, split, ways, shots)
            for where, datasets, all_ways, all_shots in blocks + cross
            for section, split in kinds if (section, split) == ("evaluate", cfg["evaluate"]["split"])
            or where.startswith("grid")
            for dataset in datasets for ways in all_ways for shots in all_shots]


def _check_against_manifests(cfg: Mapping[str, Any]) -> list[str]:
    """Ways and shots + queries against the classes and images of each dataset already built (its manifest
    under data.root); datasets not built yet are checked by the tasks and train stages, which validate again."""
    problems = []
    manifests: dict[str, Any] = {}
    for where, stage, dataset, split, ways, shots in _task_demands(cfg):
        queries = cfg[stage]["queries"]
        path = Path(cfg["data"]["root"]) / dataset / "manifest.json"
        if dataset not in manifests:
            manifests[dataset] = io.read_json(path, f"rerun the data stage (metalr data --dataset {dataset})") \
                if path.is_file() else None
        meta = (manifests[dataset] or {}).get("splits", {}).get(split)
        if not meta:
            continue
        if ways > len(meta["classes"]):
            problems.append(f"{where}.ways: {ways}-way tasks of {dataset} need {ways} classes, its {split} split has "
                            f"{len(meta['classes'])} ({path}); lower the ways")
        if meta["counts"] and shots + queries > min(meta["counts"]):
            problems.append(f"{where}.shots: {shots} shots + {stage}.queries {queries} = {shots + queries} images per "
                            f"class, but the smallest class of the {split} split of {dataset} has {min(meta['counts'])} "
                            f"({path}); lower the shots or {stage}.queries")
    return list(dict.fromkeys(problems))


def needs_validation(cfg: Mapping[str, Any]) -> bool:
    """Whether the experiment draws validation task lists: it tunes, or scores validation during training."""
    return "tune" in cfg or cfg["train"]["validate_every"] > 0


def _check_tuning(cfg: Mapping[str, Any]) -> list[str]:
    """The ``tune`` block: the same budget for every rule (AlgoPerf's rule), a space for each, model
    selection on validation only."""
    from metalr.steprules import RULES

    problems = []
    train = cfg["train"]
    if train["select"] == "best_val" and not train["validate_every"]:
        problems.append("train.select is best_val but train.validate_every is 0: set validate_every > 0 "
                        "(iterations between validation scores)")
    if "tune" not in cfg:
        return problems
    tune = cfg["tune"]
    rules = sorted({base_rule(r.rule) for r in grid_runs(cfg)})
    for key in ("trials", "iterations"):
        value = tune[key]
        if isinstance(value, Mapping):
            missing = sorted(set(rules) - set(value))
            if missing:
                problems.append(f"tune.{key}: no value for the grid's rule(s) {missing}")
            counts = {f"tune.{key}.{rule}": n for rule, n in value.items()}
            if len(set(counts.values())) > 1:
                problems.append(f"{', '.join(f'{k} = {n}' for k, n in counts.items())}: every rule gets the same "
                                f"tune.{key} (an equal tuning budget, AlgoPerf's external tuning rule)")
    for rule, overrides in tune["space"].items():
        if rule not in RULES:
            problems.append(f"tune.space.{rule}: unknown rule; valid: {sorted(RULES)}")
            continue
        for setting, space in overrides.items():
            if setting not in RULES[rule].settings:
                problems.append(f"tune.space.{rule}.{setting}: {rule} has no setting {setting!r}; "
                                f"its settings: {sorted(RULES[rule].settings)}")
            elif "low" in space and not (space["low"] < space["high"] and (not space["log"] or space["low"] > 0)):
                problems.append(f"tune.space.{rule}.{setting}: need low < high (and low > 0 when log), "
                                f"got {space['low']}, {space['high']}")
    for rule in rules:
        tuned = {n for n, s in RULES[rule].settings.items() if s.tune is not None} | set(tune["space"].get(rule, {}))
        if not tuned:
            problems.append(f"tune: rule {rule!r} declares no tunable setting; give it a range in tune.space.{rule}")
    if tune["sampler"] == "sobol":
        counts = [tune["trials"]] if isinstance(tune["trials"], int) else list(tune["trials"].values())
        problems += [f"tune.trials: {n} is not a power of 2, which the Sobol sequence's balance needs; use "
                     "halton or a power of 2" for n in set(counts) if n & (n - 1)]
    return problems


def validate(cfg: Mapping[str, Any]) -> None:
    validator = StrictValidator(_schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe(e) for e in errors]
    if not problems:
        problems = _check_names(cfg) + _check_values(cfg) + _check_against_manifests(cfg)
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
    def run_id(self) -> str:
        from metalr.stages import RUN, run_job  # the layout's one home (metalr.stages imports this module)

        return RUN.format(**run_job(self))

    def as_dict(self, experiment: str) -> dict:
        return {"experiment": experiment, **asdict(self), "run_id": self.run_id}

    @classmethod
    def parse(cls, run_id: str) -> "Run":
        """Inverse of ``run_id``: 'glyphs/5w1s/maml/mlplr/seed1'."""
        from metalr.stages import RUN, job_run, parse_run_id

        job = parse_run_id(run_id)
        if job is None:
            raise ConfigError(f"run id {run_id!r} is not of the form {RUN.replace('{', '<').replace('}', '>')}")
        return job_run(job)


GRID_KEYS = ("datasets", "algorithms", "rules", "ways", "shots", "seeds")


def grid_blocks(cfg: Mapping[str, Any]) -> list[tuple[str, dict]]:
    """(config location, block): the main grid, then each ``grid.extra`` entry completed from it."""
    main = {key: cfg["grid"][key] for key in GRID_KEYS}
    return [("grid", main)] + [(f"grid.extra[{i}]", {**main, **extra}) for i, extra in enumerate(cfg["grid"]["extra"])]


def grid_runs(cfg: Mapping[str, Any]) -> list[Run]:
    """Every trained run: the union of the grid's blocks, each a full product of its keys; with
    ``tune.untuned_baseline``, each run also as ``<rule>-untuned`` at the configured values."""
    runs = {
        Run(d, w, s, a, r, seed)
        for _, g in grid_blocks(cfg)
        for d in g["datasets"] for w in g["ways"] for s in g["shots"]
        for a in g["algorithms"] for r in g["rules"] for seed in g["seeds"]
    }
    if cfg.get("tune", {}).get("untuned_baseline"):
        runs |= {dataclasses.replace(run, rule=run.rule + UNTUNED_SUFFIX) for run in runs}
    return sorted(runs)


def tuned_cells(cfg: Mapping[str, Any]) -> list[tuple[str, int, int, str, str]]:
    """(dataset, ways, shots, algorithm, rule) of every tuned (cell, algorithm, rule): each tuned run's (the
    untuned baselines are not tuned); none without a ``tune`` block."""
    if "tune" not in cfg:
        return []
    return sorted({(r.dataset, r.ways, r.shots, r.algorithm, r.rule) for r in grid_runs(cfg) if not is_untuned(r.rule)})


def grid_datasets(cfg: Mapping[str, Any]) -> list[str]:
    """Every dataset the experiment reads: trained on, or tested on across domains."""
    return sorted({r.dataset for r in grid_runs(cfg)} | {test for _, test, _, _ in cross_domain_cells(cfg)})


def cross_domain_cells(cfg: Mapping[str, Any]) -> list[tuple[str, str, int, int]]:
    """(train dataset, test dataset, ways, shots) of every cross-domain evaluation block entry."""
    return sorted({(b["train"], test, w, s) for b in cfg["cross_domain"]
                   for test in b["test"] for w in b["ways"] for s in b["shots"]})


def cross_domain_evaluations(cfg: Mapping[str, Any]) -> list[tuple[Run, str]]:
    """(trained run, test dataset): each grid run of a cross-domain cell, evaluated on each test dataset."""
    cells = cross_domain_cells(cfg)
    return sorted((run, test) for run in grid_runs(cfg) for train, test, w, s in cells
                  if (run.dataset, run.ways, run.shots) == (train, w, s))


def check_cross_domain_evaluation(cfg: Mapping[str, Any], run: Run, test_dataset: str) -> None:
    if (run, test_dataset) not in cross_domain_evaluations(cfg):
        raise ConfigError(f"evaluating run {run.run_id} on {test_dataset!r} is not a cross_domain evaluation of "
                          f"the config; valid: {[f'{r.run_id} on {t}' for r, t in cross_domain_evaluations(cfg)]}")


def check_run_in_grid(cfg: Mapping[str, Any], run: Run) -> None:
    if run not in grid_runs(cfg):
        raise ConfigError(f"run {run.run_id} is not in the config's grid (grid.* keys); valid runs: "
                          f"{[r.run_id for r in grid_runs(cfg)]}")


def evaluation_inner_steps(cfg: Mapping[str, Any], rule: str) -> int:
    """Inner steps at evaluation: ``evaluate.inner_steps``, or ``train.inner_steps`` for the rules in
    ``evaluate.rules_at_train_steps``."""
    at_train_steps = base_rule(rule) in cfg["evaluate"]["rules_at_train_steps"]
    return cfg["train"]["inner_steps"] if at_train_steps else cfg["evaluate"]["inner_steps"]
