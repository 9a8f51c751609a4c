"""macros.tex: every number the appendix prose uses, as TeX macros (the prose types no number itself).

Each macro comes with a comment naming what it counts; the numbers trace back to summary.csv,
paired.csv, the config (choices ledger) and config ``report.paper_results``.
"""
from __future__ import annotations

import hashlib
import math
from decimal import Decimal

import pandas as pd

from metalr.evaluate.stats import CONFIDENCE

from . import aggregate as agg
from . import choices as choices_mod
from . import paired as paired_mod
from . import paper as paper_mod
from . import tables as tables_mod
from .latex import MISSING, SHORT_HASH, latex_escape, macro_name, num, or_na, pct, points

ALWAYS_PAIRED = ("mlplr",)  # the appendix discusses MLPLR, so its pair macros exist even with no pair


def _uniform(values, fmt=str) -> str:
    vals = sorted(set(values))
    if not vals:
        return MISSING
    return fmt(vals[0]) if len(vals) == 1 else "varies"


def evaluation_steps_text(runs: pd.DataFrame) -> str:
    """The evaluations' inner steps: one number, or the most common one with the exceptions by rule,
    e.g. "10 (5 for ALFA)"."""
    if runs["inner_steps"].nunique() <= 1:
        return _uniform(int(s) for s in runs["inner_steps"])
    common = int(runs["inner_steps"].mode().min())
    exceptions = [f"{int(steps)} for {', '.join(agg.rule_label(r) for r in sorted(set(group['rule'])))}"
                  for steps, group in runs.groupby("inner_steps") if int(steps) != common]
    return latex_escape(f"{common} ({'; '.join(exceptions)})")


def task_list_digest(runs: pd.DataFrame) -> str:
    """Short digest over all (test set, task-list hash) pairs: one identifier for every table."""
    tasks = agg.check_same_tasks(runs)
    if len(tasks) == 1:
        return next(iter(tasks.values())).sha256[:SHORT_HASH]
    text = "\n".join(f"{d}/{w}/{s}{'/' + pool if pool else ''}:{facts.sha256}"
                     for (d, w, s, pool), facts in sorted(tasks.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:SHORT_HASH]


def setting_label(dataset: str, test_dataset: str, ways: int, shots: int) -> str:
    return f"{agg.column_label(dataset, test_dataset)} {ways}-way {shots}-shot"


def _best(cells: pd.DataFrame):
    return max(cells.itertuples(), key=lambda c: (Decimal(pct(c.mean)), -agg.algorithm_rank(c.algorithm)[0]),
               default=None)


def ways_settings(cells: pd.DataFrame) -> list[tuple[str, int, list[int]]]:
    """(test dataset, shots, ways values) of in-domain cells run at more than one number of ways."""
    own = cells[cells["dataset"] == cells["test_dataset"]]
    out = []
    for (dataset, shots), group in own.groupby(["dataset", "shots"], sort=True):
        ways = sorted({int(w) for w in group["ways"]})
        if len(ways) > 1:
            out.append((str(dataset), int(shots), ways))
    return out


def task_repeats_text(tasks: dict[tuple[str, int, int, str], agg.TaskListFacts]) -> str:
    """A sentence naming the task lists whose tasks repeat, with their distinct and drawn counts ('' if none)."""
    repeating = [f"{agg.task_list_label(*key)} ({f.distinct_tasks} distinct of {f.n_tasks})"
                 for key, f in sorted(tasks.items()) if f.distinct_tasks < f.n_tasks]
    if not repeating:
        return ""
    return latex_escape(f"Tasks repeat in the task list(s) of {'; '.join(repeating)}: the split has too few classes "
                        f"or images for that many different tasks, and each interval weighs a task as often as it "
                        f"was drawn.")


def _verdict_macros(add, paired: pd.DataFrame, within: pd.DataFrame) -> None:
    """Counts and means per rule (the appendix prose) and every number of the verdict table per pair."""
    for rule in sorted(set(paired["rule"]) | set(ALWAYS_PAIRED), key=agg.rule_rank):
        sub, seeds = paired[paired["rule"] == rule], within[within["rule"] == rule]
        suffix = macro_name(rule)
        add("NumPaired" + suffix, str(len(sub)), f"cells pairing {rule} with fixed (paired.csv)")
        for name, value in (("Better", paired_mod.BETTER), ("Worse", paired_mod.WORSE),
                            ("Unclear", paired_mod.UNCLEAR), ("OneSeed", paired_mod.ONE_SEED)):
            add(f"NumVerdict{name}" + suffix, str(int((sub["verdict"] == value).sum())), f"of which verdict '{value}'")
        add("MeanPairedDiff" + suffix, pct(sub["mean"].mean()) if len(sub) else MISSING,
            f"mean over cells of {rule} - fixed (percentage points; each cell: mean over its seeds)")
        poi = sub["poi"].dropna()
        add("MeanPoi" + suffix, or_na(points(poi.mean() if len(poi) else float("nan"))),
            f"mean over cells with several seeds of P({rule} > fixed)")
        add("NumWithinSeed" + suffix, str(len(seeds)), f"seed-level pairs of {rule} and fixed (paired_within_seed.csv)")
        add("NumWithinSeedBetter" + suffix, str(int((seeds["low"] > 0).sum())),
            "of which the per-task 95% CI is above 0")
        add("NumWithinSeedWorse" + suffix, str(int((seeds["high"] < 0).sum())),
            "of which the per-task 95% CI is below 0")
    for r in paired.to_dict("records"):
        target = () if r["dataset"] == r["test_dataset"] else ("To", r["test_dataset"])
        long = macro_name(r["dataset"], *target, r["ways"], "Way", r["shots"], "Shot", r["algorithm"], r["rule"])
        add("Diff" + long, pct(r["mean"]), f"{setting_label(r['dataset'], r['test_dataset'], r['ways'], r['shots'])} "
                                          f"{r['algorithm']} {r['rule']} - fixed, mean over seeds (paired.csv)")
        add("DiffSeedLow" + long, or_na(pct(r["seed_low"])))
        add("DiffSeedHigh" + long, or_na(pct(r["seed_high"])))
        add("DiffBootLow" + long, or_na(pct(r["boot_low"])))
        add("DiffBootHigh" + long, or_na(pct(r["boot_high"])))
        add("Poi" + long, or_na(points(r["poi"])))
        add("Verdict" + long, latex_escape(r["verdict"]))


def macros_model(runs: pd.DataFrame, experiment: str, train: list[dict], table_labels: list[str],
                 paired: pd.DataFrame, within: pd.DataFrame, comparison: pd.DataFrame, choices: list,
                 resamples: int) -> list[dict]:
    """(name, TeX value, comment) of every macro; ValueError when two names clash."""
    cells = agg.cells(runs)
    own_cells = cells[cells["dataset"] == cells["test_dataset"]]
    cols = agg.settings(runs)
    tasks = agg.check_same_tasks(runs)
    out: list[dict] = []

    def add(name: str, value: str, comment: str = "") -> None:
        out.append({"name": name, "value": value, "comment": comment})

    add("Experiment", latex_escape(experiment), "config experiment")
    add("ConfLevel", f"{100 * CONFIDENCE:g}", "confidence level of every interval (metalr.evaluate.stats)")
    add("NumRuns", str(len(runs)), "evaluations (metrics files)")
    add("NumInDomainRuns", str(len(tables_mod.in_domain(runs))), "evaluations on the training dataset's test tasks")
    add("NumCrossDomainRuns", str(len(tables_mod.cross_domain(runs))), "evaluations on another dataset's test tasks")
    add("NumMethods", str(len(agg.methods(runs))), "algorithm x rule rows")
    add("NumSettings", str(len(cols)), "train x test dataset x ways x shots columns")
    add("NumDatasets", str(len(set(runs["dataset"]) | set(runs["test_dataset"]))), "datasets (train or test)")
    add("NumSeeds", _uniform(int(n) for n in cells["n_seeds"]), "seeds per cell (config grid.seeds)")
    add("NumTestTasks", _uniform(f.n_tasks for f in tasks.values()), "test tasks per test set (config evaluate.tasks)")
    add("NumDistinctTestTasks", _uniform(f.distinct_tasks for f in tasks.values()),
        "distinct tasks among them (fewer when a small split repeats tasks)")
    add("TaskRepeats", task_repeats_text(tasks), "the task lists whose tasks repeat, in a sentence (empty if none)")
    add("EvalInnerSteps", evaluation_steps_text(runs),
        "inner steps at evaluation (config evaluate.inner_steps; evaluate.rules_at_train_steps use train.inner_steps)")
    add("TrainInnerSteps", _uniform(int(t["inner_steps"]) for t in train), "inner steps in training (config train.inner_steps)")
    add("TaskBatch", _uniform(int(t["task_batch"]) for t in train), "tasks per meta-batch (config train.task_batch)")
    add("TaskListHash", task_list_digest(runs), "short SHA-256 of the task list(s)")
    add("InDomainTableRefs", tables_mod.table_refs([l for l in table_labels if l != tables_mod.label("cross_domain")]),
        "the in-domain tables (config report.tables)")
    add("CrossDomainTableRef", tables_mod.table_refs([l for l in table_labels if l == tables_mod.label("cross_domain")]),
        "the cross-domain table")

    top = _best(own_cells)
    add("BestAcc", pct(top.mean) if top else MISSING, "best in-domain accuracy (percent)")
    add("BestCi", pct(top.ci95) if top else MISSING, "its 95% CI (percent)")
    add("BestMethod", latex_escape(agg.method_label(top.algorithm, top.rule)) if top else MISSING, "its method")
    add("BestSetting", latex_escape(setting_label(top.dataset, top.test_dataset, top.ways, top.shots)) if top else MISSING,
        "its setting")

    fixed = runs[runs["rule"] == "fixed"]
    add("LambdaFixed", _uniform((round(float(v), 12) for v in fixed["lambda_mean"] if math.isfinite(v)), num),
        "step size of the fixed rule (config rules.fixed.lr)")
    mlplr = runs[runs["rule"] == "mlplr"]
    add("LambdaMlplrMin", num(mlplr["lambda_min"].min()) if len(mlplr) else MISSING, "smallest MLPLR step at eval")
    add("LambdaMlplrMax", num(mlplr["lambda_max"].max()) if len(mlplr) else MISSING, "largest MLPLR step at eval")
    add("LambdaMlplrMean", num(mlplr["lambda_mean"].mean()) if len(mlplr) else MISSING, "mean MLPLR step at eval")

    # rule vs fixed: the verdict across seeds (paired.csv) and the per-task tests within a seed
    add("BootResamples", str(int(resamples)),
        "bootstrap replicates of each verdict (config report.bootstrap.resamples)")
    _verdict_macros(add, paired, within)

    # the paper's Tables 1-3 against ours (config report.paper_results)
    n = paper_mod.counts(comparison)
    add("PaperCells", str(n["cells"]), "cells of the paper's Tables 1-3 (config report.paper_results)")
    add("PaperCellsRun", str(n["run"]), "of which this experiment ran")
    add("PaperCellsReproduced", str(n["reproduced"]), "of which the 95% intervals overlap")
    add("PaperCellsNotRun", str(n["not_run"]), "paper cells not run in this experiment")
    add("PaperSummary", f"{n['reproduced']} of {n['run']} paper cells reproduce (intervals overlap); "
                        f"{n['not_run']} not run in this experiment", "the comparison in one sentence")
    diffs = comparison["difference"].dropna()
    add("PaperMeanAbsDiff", points(diffs.abs().mean()) if len(diffs) else MISSING,
        "mean |ours - paper| over the cells run (percentage points)")

    # Figure 3: accuracy vs number of ways
    ways = ways_settings(cells)
    add("NumWaysPanels", str(len(ways)), "panels of the ways figure")
    add("WaysFigureSettings", latex_escape("; ".join(
        f"{d} {s}-shot at {', '.join(map(str, w))} ways" for d, s, w in ways) or "none (every dataset at one ways value)"),
        "datasets, shots and ways of the ways figure (config grid)")

    # choices ledger
    c = choices_mod.counts(choices)
    add("NumChoices", str(c["all"]), "config values in the choices ledger")
    add("NumChoicesPaper", str(c["paper"]), "of which from the paper")
    add("NumChoicesCited", str(c["cited"]), "of which from a cited reference")
    add("NumChoicesOurs", str(c["ours"]), "of which our choice")
    add("NumChoicesUntagged", str(c["untagged"]), "of which without a provenance tag")
    add("NumChoicesTuned", str(c["tuned"]), "of which tuned on meta-validation (their value: the untuned baseline's)")

    # per cell and per column
    single = len({(d, w) for d, t, w, _ in cols if d == t}) == 1
    for c in cells.itertuples():
        target = () if c.dataset == c.test_dataset else ("To", c.test_dataset)
        long = (c.dataset, *target, c.ways, "Way", c.shots, "Shot", c.algorithm, c.rule)
        add("Acc" + macro_name(*long), pct(c.mean), f"{setting_label(c.dataset, c.test_dataset, c.ways, c.shots)} "
                                                    f"{c.algorithm} {c.rule}")
        add("Ci" + macro_name(*long), pct(c.ci95))
        add("SeedSd" + macro_name(*long), or_na(pct(c.seed_sd)), "sd of the seed means (cells.csv)")
        if single and not target:
            add("Acc" + macro_name(c.algorithm, c.rule, c.shots, "Shot"), pct(c.mean))
            add("Ci" + macro_name(c.algorithm, c.rule, c.shots, "Shot"), pct(c.ci95))
    for col in cols:
        sub = cells[(cells["dataset"] == col[0]) & (cells["test_dataset"] == col[1]) & (cells["ways"] == col[2])
                    & (cells["shots"] == col[3])]
        b = _best(sub)
        target = () if col[0] == col[1] else ("To", col[1])
        names = [macro_name(col[0], *target, col[2], "Way", col[3], "Shot")]
        if single and not target:
            names.append(macro_name(col[3], "Shot"))
        for suffix in names:
            add("BestAcc" + suffix, pct(b.mean))
            add("BestMethod" + suffix, latex_escape(agg.method_label(b.algorithm, b.rule)))

    seen: dict[str, int] = {}
    for m in out:
        seen[m["name"]] = seen.get(m["name"], 0) + 1
    clashes = sorted(name for name, k in seen.items() if k > 1)
    if clashes:
        raise ValueError(f"TeX macro names clash (rename a dataset/algorithm/rule): {clashes}")
    return out
