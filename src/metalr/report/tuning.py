"""The appendix's tuning section: search spaces, every trial, the chosen values, the budget, sensitivity.

Reads the tuning results of an experiment (``metalr.tune``): each (cell, algorithm, rule)'s chosen.json
(checked against its own sha256), every trial file it names (checked against the sha256 chosen.json
recorded) and each trial's cost file (CPU or GPU seconds). Writes TUNING_OUTPUTS:

- tuning.tex: the search space of every tuned rule (range, scale, source), the chosen values per cell,
  and every trial's settings and validation accuracy;
- sensitivity.pdf: validation accuracy against each tuned value, one panel per (rule, setting), the
  chosen trials ringed;
- tuning-macros.tex: the budget (trials x iterations per rule, sampler, device hours) for the prose.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

from metalr import io
from metalr.config import ConfigError, Run
from metalr.tune import load_chosen, trial_files_of

from . import aggregate as agg
from . import latex
from .figures import RC, _new_figure, _save, mpl_text

TUNING_OUTPUTS = ("tuning.tex", "sensitivity.pdf", "tuning-macros.tex")
PANELS_PER_ROW = 4


def value_text(value: Any) -> str:
    """A setting's value as the tables show it: 3 significant digits, or the choice's name."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def settings_text(settings: Mapping[str, Any]) -> str:
    return ", ".join(f"{name} {value_text(value)}" for name, value in settings.items())


def load_results(chosen_files: list[Path], trial_files: list[Path], cost_files: list[Path]) -> list[dict]:
    """Each chosen.json with its trials' files read and checked, and their summed cost.

    Raises ConfigError when a file does not match the hash its reader recorded, naming it and the stage
    to rerun."""
    given = {str(p) for p in trial_files} | {str(p) for p in cost_files}
    results = []
    for path in chosen_files:
        raw = io.read_json(path)
        run = Run(raw["run"]["dataset"], raw["run"]["ways"], raw["run"]["shots"], raw["run"]["algorithm"],
                  raw["run"]["rule"], raw["run"]["seed"])
        chosen = load_chosen(Path(path), run)
        folder = Path(path).parent
        seconds, device = 0.0, set()
        for trial in chosen["trials"]:
            trial_path, cost_path = trial_files_of(folder, trial["trial"])
            if not {str(trial_path), str(cost_path)} <= given:
                raise ConfigError(f"{path} names trial {trial['trial']}, whose files {trial_path} and {cost_path} "
                                  "were not given to the tuning report")
            if io.sha256_file(trial_path) != trial["sha256"]:
                raise io.HashMismatch(f"trial file {trial_path} differs from the sha256 {path} recorded; rerun the tune "
                                  f"stage of {run.dataset} {run.ways}w{run.shots}s {run.algorithm} {run.rule}")
            cost = io.read_json(cost_path)
            seconds += cost["seconds"]
            device.add(cost["device"])
        results.append({**chosen, "cell": (run.dataset, run.ways, run.shots), "seconds": seconds, "devices": device})
    return results


def _space_rows(results: list[dict]) -> list[dict]:
    rows = {}
    for r in results:
        rule = r["run"]["rule"]
        for setting, space in r["space"].items():
            if "choices" in space:
                rng, scale = ", ".join(map(str, space["choices"])), "choice"
            else:
                rng, scale = f"[{value_text(space['low'])}, {value_text(space['high'])}]", "log" if space["log"] else "linear"
            rows[(agg.rule_rank(rule), setting)] = {"rule": agg.rule_label(rule), "setting": setting, "range": rng,
                                                    "scale": scale, "source": space["source"]}
    return [rows[k] for k in sorted(rows)]


def _order(r: dict) -> tuple:
    d, w, s = r["cell"]
    return (d, w, s, agg.algorithm_rank(r["run"]["algorithm"]), agg.rule_rank(r["run"]["rule"]))


def _chosen_rows(results: list[dict]) -> list[dict]:
    return [{"cell": latex.setting_label(*r["cell"]), "algorithm": agg.algorithm_label(r["run"]["algorithm"]),
             "rule": agg.rule_label(r["run"]["rule"]), "settings": settings_text(r["settings"]),
             "trial": f"{r['trial']} of {r['budget']['trials']}", "accuracy": latex.pct(r["validation_accuracy"])}
            for r in sorted(results, key=_order)]


def _trial_rows(results: list[dict]) -> list[dict]:
    rows = []
    for r in sorted(results, key=_order):
        for t in r["trials"]:
            rows.append({"cell": latex.setting_label(*r["cell"]), "algorithm": agg.algorithm_label(r["run"]["algorithm"]),
                         "rule": agg.rule_label(r["run"]["rule"]), "trial": t["trial"],
                         "settings": settings_text(t["settings"]), "accuracy": latex.pct(t["validation_accuracy"]),
                         "chosen": t["trial"] == r["trial"]})
    return rows


def budget(cfg: Mapping[str, Any], results: list[dict]) -> dict:
    """The tuning budget the prose states: equal per rule by construction (config validation)."""
    trials = {r["budget"]["trials"] for r in results}
    iterations = {r["budget"]["iterations"] for r in results}
    if len(trials) != 1 or len(iterations) != 1:
        raise ConfigError(f"tuning results of unequal budgets (trials {sorted(trials)}, iterations {sorted(iterations)}); "
                          "rerun the tuning stages")
    devices = set().union(*(r["devices"] for r in results))
    return {"trials": trials.pop(), "iterations": iterations.pop(), "sampler": cfg["tune"]["sampler"],
            "seed": cfg["tune"]["seed"], "runs": sum(r["budget"]["trials"] for r in results), "tuned": len(results),
            "hours": sum(r["seconds"] for r in results) / 3600,
            "device": "GPU" if devices - {"cpu"} else "CPU"}


def sensitivity_figure(results: list[dict], path: Path) -> list[Path]:
    """Validation accuracy against each tuned value: one panel per (rule, setting); colour = algorithm,
    marker = cell; the chosen trial of each (cell, algorithm, rule) ringed."""
    import matplotlib

    panels: dict[tuple, list] = defaultdict(list)
    spaces = {}
    for r in results:
        for setting, space in r["space"].items():
            key = (agg.rule_rank(r["run"]["rule"]), r["run"]["rule"], setting)
            spaces[key] = space
            for t in r["trials"]:
                panels[key].append((t["settings"][setting], 100 * t["validation_accuracy"], r["run"]["algorithm"],
                                    r["cell"], t["trial"] == r["trial"]))
    keys = sorted(panels)
    columns = min(PANELS_PER_ROW, len(keys))
    rows = math.ceil(len(keys) / columns)
    algorithms = sorted({r["run"]["algorithm"] for r in results}, key=agg.algorithm_rank)
    cells = sorted({r["cell"] for r in results})
    colours = dict(zip(algorithms, matplotlib.colormaps["tab10"].colors))
    markers = dict(zip(cells, "os^Dv<>p*h"))
    with matplotlib.rc_context(RC):
        fig = _new_figure(1.75 * columns + 0.4, 1.6 * rows + 0.5)
        axes = fig.subplots(rows, columns, squeeze=False)
        for ax, key in zip(axes.flat, keys):
            space = spaces[key]
            choices = space.get("choices")
            for value, accuracy, algorithm, cell, chosen in panels[key]:
                x = choices.index(value) if choices else value
                ax.scatter([x], [accuracy], s=16 if chosen else 9, color=colours[algorithm], marker=markers[cell],
                           edgecolors="black" if chosen else "none", linewidths=0.8, zorder=3 if chosen else 2)
            if choices:
                ax.set_xticks(range(len(choices)), [mpl_text(c) for c in choices], fontsize=6)
                ax.set_xlim(-0.5, len(choices) - 0.5)
            elif space["log"]:
                ax.set_xscale("log")
            ax.set_title(mpl_text(f"{agg.rule_label(key[1])}: {key[2]}"))
            ax.set_ylabel("validation accuracy (%)")
        for ax in list(axes.flat)[len(keys):]:
            ax.set_visible(False)
        handles = [matplotlib.lines.Line2D([], [], color=colours[a], marker="o", linestyle="", markersize=4,
                                           label=agg.algorithm_label(a)) for a in algorithms]
        handles += [matplotlib.lines.Line2D([], [], color="grey", marker=markers[c], linestyle="", markersize=4,
                                            label=mpl_text(latex.setting_label(*c))) for c in cells]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), frameon=False)
        return [_save(fig, path, "pdf")]


def build_tuning(cfg: Mapping[str, Any], chosen_files: list[Path], trial_files: list[Path], cost_files: list[Path],
                 out_dir: Path, templates_dir: Path | None = None) -> list[Path]:
    """Write TUNING_OUTPUTS into ``out_dir`` from the experiment's tuning results."""
    if "tune" not in cfg or not chosen_files:
        raise ConfigError("the tuning report needs a config with a tune block and its tuning results")
    results = load_results(chosen_files, trial_files, cost_files)
    spent = budget(cfg, results)
    experiment = cfg["experiment"]
    text = latex.render("tuning.tex.j2", templates_dir, experiment=experiment, spaces=_space_rows(results),
                        chosen=_chosen_rows(results), trials=_trial_rows(results))
    macros = [
        ("TuneTrials", str(spent["trials"]), "quasi-random trials per cell, algorithm and rule (tune.trials)"),
        ("TuneIterations", str(spent["iterations"]), "meta-training iterations per trial (tune.iterations)"),
        ("TuneSampler", spent["sampler"].capitalize(), "tune.sampler (scipy.stats.qmc, scrambled)"),
        ("TuneSeed", str(spent["seed"]), "tune.seed"),
        ("TuneRuns", str(spent["runs"]), "trials in all"),
        ("TuneTuned", str(spent["tuned"]), "tuned (cell, algorithm, rule) combinations"),
        ("TuneHours", f"{spent['hours']:.2f}", "device hours the trials took, summed"),
        ("TuneDevice", spent["device"], "the device the trials ran on"),
    ]
    macro_text = latex.render("macros.tex.j2", templates_dir, experiment=experiment,
                              macros=[{"name": n, "value": v, "comment": c} for n, v, c in macros])
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in (("tuning.tex", text), ("tuning-macros.tex", macro_text)):
        io.write_text(out_dir / name, content)
        written.append(out_dir / name)
    return written + sensitivity_figure(results, out_dir / "sensitivity.pdf")
