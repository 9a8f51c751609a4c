"""Equal-budget tuning of the values the paper leaves open, on meta-validation only.

The rule MLCommons AlgoPerf sets for comparing training algorithms (its external tuning ruleset): every
contender declares a search space, gets the same number of quasi-random trials, each trial is scored on
validation data, and test data stays untouched. Here the contenders are the step-size rules, ``fixed``
included, per (dataset, ways, shots, algorithm) of the grid:

- the search space of a rule is each setting's ``tune`` range in its module's SPEC (``metalr.plugins``),
  or ``tune.space.<rule>.<setting>`` where the experiment overrides it; numeric ranges that span decades
  are log-uniform, discrete settings (MLPLR's reading of Eq. 4) are a list of choices;
- ``tune.trials`` points are drawn by a scrambled quasi-random sequence (``tune.sampler``: Halton, as
  AlgoPerf's quasi-random search, or Sobol; ``scipy.stats.qmc``) seeded by ``tune.seed``: trial ``k`` is
  the k-th point of the sequence mapped onto the space, the same for every cell; a point that breaks a
  SPEC constraint (MLPLR: lr_min <= lr_max) is moved onto it (lr_min set to lr_max);
- each trial meta-trains for ``tune.iterations`` (seed ``tune.seed``) and is scored on the cell's
  validation tasks (``evaluate.val_tasks``, ``metalr.evaluate.validation``): mean query accuracy;
- the best trial (highest mean validation accuracy; ties go to the lower trial index) is written to a
  hashed ``chosen.json``, a declared input of the grid's training and evaluation jobs of that cell and
  rule, whose values they use (``config_for_run``). ``tune.trials`` and ``tune.iterations`` are the
  same for every rule (config validation refuses anything else).

With ``tune.untuned_baseline``, each rule also runs at its configured values as ``<rule>-untuned``, so
the report sets the tuned verdict beside the untuned one. Nothing here reads the test split.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from metalr import io
from metalr.config import ConfigError, Run, base_rule
from metalr.plugins import TuneSpace

CHOSEN_FORMAT = 1


@dataclass(frozen=True)
class Dimension:
    """One tuned setting of a rule and the range it is searched over."""

    setting: str
    space: TuneSpace

    def value(self, u: float) -> Any:
        """The setting's value at the unit-interval coordinate ``u`` in [0, 1)."""
        space = self.space
        if space.choices is not None:
            return space.choices[min(int(u * len(space.choices)), len(space.choices) - 1)]
        if space.log:
            return math.exp(math.log(space.low) + u * (math.log(space.high) - math.log(space.low)))
        return space.low + u * (space.high - space.low)


def budget(cfg: Mapping[str, Any], key: str, rule: str) -> int:
    """``tune.trials`` or ``tune.iterations`` for ``rule``: one integer, or a per-rule mapping."""
    value = cfg["tune"][key]
    return value if isinstance(value, int) else value[base_rule(rule)]


def search_space(cfg: Mapping[str, Any], rule: str) -> list[Dimension]:
    """The rule's tuned settings, in SPEC order: SPEC ranges, overridden by ``tune.space.<rule>``."""
    from metalr.steprules import RULES

    overrides = cfg["tune"]["space"].get(rule, {})
    dimensions = []
    for name, setting in RULES[rule].settings.items():
        if name in overrides:
            dimensions.append(Dimension(name, TuneSpace.parse({**overrides[name], "source": "[config] tune.space"},
                                                              f"tune.space.{rule}.{name}")))
        elif setting.tune is not None:
            dimensions.append(Dimension(name, setting.tune))
    return dimensions


def tuned_keys(cfg: Mapping[str, Any]) -> dict[str, str]:
    """Every config key the experiment tunes (``rules.<rule>.<setting>`` of the grid's rules), with its range
    and budget in words, for the choices ledger; empty without a ``tune`` block."""
    from metalr.config import grid_runs

    if "tune" not in cfg:
        return {}
    rules = sorted({base_rule(run.rule) for run in grid_runs(cfg)})
    return {f"rules.{rule}.{d.setting}": f"{d.space.describe()}; {budget(cfg, 'trials', rule)} trials of "
            f"{budget(cfg, 'iterations', rule)} iterations per cell and algorithm; range from {d.space.source}"
            for rule in rules for d in search_space(cfg, rule)}


def trial_points(cfg: Mapping[str, Any], rule: str) -> list[dict[str, Any]]:
    """Every trial's settings for ``rule`` (deterministic: the sampler is seeded by ``tune.seed``)."""
    from scipy.stats import qmc

    from metalr.steprules import RULES

    dimensions = search_space(cfg, rule)
    sampler = {"halton": qmc.Halton, "sobol": qmc.Sobol}[cfg["tune"]["sampler"]]
    unit = sampler(d=len(dimensions), scramble=True, seed=cfg["tune"]["seed"]).random(budget(cfg, "trials", rule))
    return [RULES[rule].constrain({d.setting: d.value(float(u)) for d, u in zip(dimensions, row)}) for row in unit]


def trial_config(cfg: Mapping[str, Any], rule: str, point: Mapping[str, Any]) -> Mapping[str, Any]:
    """The config a trial trains with: the rule's settings at ``point``, ``tune.iterations`` iterations,
    the last iterate kept (a trial is scored once, at its end)."""
    from metalr.config import overlay

    return overlay(cfg, {"rules": {rule: dict(point)},
                         "train": {"iterations": budget(cfg, "iterations", rule), "validate_every": 0,
                                   "select": "last"}})


def trial_run(cfg: Mapping[str, Any], dataset: str, ways: int, shots: int, algorithm: str, rule: str) -> Run:
    """The run a trial trains: the cell, algorithm and rule, with the tuning seed."""
    return Run(dataset, ways, shots, algorithm, rule, cfg["tune"]["seed"])


def trial_files_of(folder: Path, trial: int) -> tuple[Path, Path]:
    """A trial's result and its cost file, as the tuning stages name them in one tuning folder."""
    return folder / f"trial{trial}.json", folder / f"trial{trial}-cost.json"


def run_trial(cfg: Mapping[str, Any], run: Run, trial: int, data_dir: Path, val_tasks: Path, checkpoint_path: Path,
              out: Path, progress: bool = True, device: str = "cpu") -> dict:
    """Meta-train trial ``trial`` of ``run``'s rule and score it on the validation tasks; write ``out`` and,
    beside it, the trial's cost (device seconds: what the budget in hours adds up; kept out of ``out``,
    whose bytes depend on the trial's inputs alone).

    Reads the train and val splits only. Raises ConfigError for a trial index outside ``tune.trials``,
    io.Busy when another process runs the same trial.
    """
    from metalr.train.loop import lock_file

    points = trial_points(cfg, run.rule)
    if not 0 <= trial < len(points):
        raise ConfigError(f"trial {trial} of {run.rule} does not exist: tune.trials gives {len(points)} (0..{len(points) - 1})")
    with io.exclusive_lock(lock_file(checkpoint_path), f"tuning trial {trial} of {run.run_id}"):
        return _run_trial(cfg, run, trial, points[trial], data_dir, val_tasks, checkpoint_path, out, progress, device)


def _run_trial(cfg: Mapping[str, Any], run: Run, trial: int, point: Mapping[str, Any], data_dir: Path,
               val_tasks: Path, checkpoint_path: Path, out: Path, progress: bool, device: str) -> dict:
    from metalr import precision
    from metalr.config import evaluation_inner_steps
    from metalr.data.arrays import load_split, split_hashes
    from metalr.evaluate.stats import mean_ci95
    from metalr.evaluate.validation import Validation
    from metalr.train.loop import fit

    cost_path = trial_files_of(out.parent, trial)[1]
    for path in (out, cost_path, checkpoint_path):
        io.remove_stale_temporaries(path)
    started = time.process_time() if device == "cpu" else time.perf_counter()
    tcfg = trial_config(cfg, run.rule, point)
    validation = Validation.load(val_tasks, data_dir, run.dataset, run.ways, run.shots,
                                 evaluation_inner_steps(cfg, run.rule), device,
                                 precision.forward_context(cfg["compute"], device))
    fitted = fit(tcfg, run, load_split(data_dir, "train"), checkpoint_path, progress, device)
    accuracies = validation.accuracies(fitted.algorithm, fitted.params, fitted.meta, fitted.rule)
    result = {
        "format": CHOSEN_FORMAT,
        "run": {"dataset": run.dataset, "ways": run.ways, "shots": run.shots, "algorithm": run.algorithm,
                "rule": run.rule, "seed": run.seed},
        "trial": trial,
        "settings": dict(point),
        "space": {d.setting: d.space.as_dict() for d in search_space(cfg, run.rule)},
        "iterations": tcfg["train"]["iterations"],
        "validation": {"accuracy": mean_ci95(accuracies), "per_task_accuracy": [round(float(a), 6) for a in accuracies],
                       "task_list": dict(validation.record())},
        "final_query_accuracy": fitted.log["query_accuracy"][-1],
        "data": {split: split_hashes(data_dir, split) for split in ("train", "val")},
    }
    seconds = (time.process_time() if device == "cpu" else time.perf_counter()) - started
    io.write_json(out, result)
    io.write_json(cost_path, {"seconds": round(seconds, 3), "device": device,
                              "measure": "process CPU time" if device == "cpu" else "wall time on the GPU"})
    checkpoint_path.unlink(missing_ok=True)
    return result


def select(trial_files: list[Path], out: Path) -> dict:
    """The best trial of one (cell, algorithm, rule): highest mean validation accuracy, ties to the lower
    index; written to ``out`` with its own sha256 and the sha256 of every trial file it read.

    Raises ConfigError when the trial files are not the consecutive trials 0..n-1 of one run."""
    trials = [io.read_json(path, "rerun its tuning trial (metalr trial)") for path in trial_files]
    identity = {io.canonical_json(t["run"]) for t in trials}
    if len(identity) != 1 or sorted(t["trial"] for t in trials) != list(range(len(trials))):
        raise ConfigError(f"tuning {out}: the trial files {[str(p) for p in trial_files]} are not trials 0.."
                          f"{len(trials) - 1} of one run; rerun the tuning trials")
    best = max(trials, key=lambda t: (t["validation"]["accuracy"]["mean"], -t["trial"]))
    body = {
        "format": CHOSEN_FORMAT,
        "run": best["run"],
        "settings": best["settings"],
        "trial": best["trial"],
        "validation_accuracy": best["validation"]["accuracy"]["mean"],
        "space": best["space"],
        "budget": {"trials": len(trials), "iterations": best["iterations"]},
        "trials": [{"trial": t["trial"], "settings": t["settings"], "validation_accuracy": t["validation"]["accuracy"]["mean"],
                    "sha256": io.sha256_file(path)} for t, path in sorted(zip(trials, trial_files), key=lambda p: p[0]["trial"])],
    }
    chosen = {**body, "sha256": io.sha256_json(body)}
    io.write_json(out, chosen)
    return chosen


def load_chosen(path: Path, run: Run) -> dict:
    """A chosen.json, checked against its own sha256 and against ``run``'s cell, algorithm and rule.

    Raises io.UnreadableFile or io.HashMismatch (edited or damaged), ConfigError (another run's result), each
    naming the file and the stage to rerun."""
    remedy = "rerun its tune stage (metalr tune)"
    chosen = io.read_json(path, remedy)
    body = {k: v for k, v in chosen.items() if k != "sha256"} if isinstance(chosen, dict) else None
    if not isinstance(chosen, dict) or chosen.get("sha256") != io.sha256_json(body):
        raise io.HashMismatch(f"tuning result {path} does not match its own sha256: it was edited or damaged; {remedy}")
    cell = (chosen["run"]["dataset"], chosen["run"]["ways"], chosen["run"]["shots"], chosen["run"]["algorithm"],
            chosen["run"]["rule"])
    if cell != (run.dataset, run.ways, run.shots, run.algorithm, base_rule(run.rule)):
        raise ConfigError(f"tuning result {path} is for {cell}, not for run {run.run_id}")
    return chosen


def config_for_run(cfg: Mapping[str, Any], run: Run, chosen_path: Path | None) -> tuple[Mapping, dict | None]:
    """The config ``run`` trains and is evaluated with, and the tuning result it came from: the tuned
    settings of its rule (from ``chosen_path``) when the experiment tunes and the run is not an untuned
    baseline; else ``cfg`` itself and None.

    Raises ConfigError when a tuned run is given no tuning result, or an untuned one is given one."""
    from metalr.config import is_untuned, overlay

    tuned = "tune" in cfg and not is_untuned(run.rule)
    if tuned != (chosen_path is not None):
        need = "needs its tuning result (--tuned <chosen.json>)" if tuned else "takes no tuning result"
        raise ConfigError(f"run {run.run_id} {need}")
    if not tuned:
        return cfg, None
    chosen = load_chosen(chosen_path, run)
    print(f"{run.run_id}: tuned settings {chosen['settings']} (trial {chosen['trial']} of {chosen['budget']['trials']}, "
          f"validation accuracy {chosen['validation_accuracy']:.4f}) from {chosen_path}", file=sys.stderr)
    record = {"path": str(chosen_path), "sha256": chosen["sha256"], "settings": chosen["settings"]}
    return overlay(cfg, {"rules": {run.rule: chosen["settings"]}}), record
