"""Every step-size rule against the fixed rule, at two levels: methods (across seeds) and networks (within a seed).

A rule is paired with the ``fixed`` run of the same training dataset, test dataset, ways, shots,
algorithm and seed: same seed, same frozen task list, so the difference rule - fixed is taken task by
task and class by class.

* ``paired`` (paired.csv, the verdict): per cell and rule, the paired difference of each seed (mean over
  tasks), their mean with the Student-t interval across seeds (n_seeds - 1 df), the bootstrap interval
  over seeds and test classes and the probability of improvement with its bootstrap interval
  (metalr.report.method_stats), and the verdict they support. With one seed only the difference exists:
  the rest is NaN (n/a), the verdict "n/a (one seed)".
* ``within_seed`` (paired_within_seed.csv): per cell, rule and seed, the per-task paired t-test of that
  seed's two networks (mean over tasks, 95% Student-t interval, two-sided p-value). Its n is the number
  of tasks: it says whether these two trained networks differ on this task distribution, not whether
  the methods do.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from metalr.config import UNTUNED_SUFFIX, base_rule, is_untuned
from metalr.evaluate.stats import paired_difference

from . import aggregate as agg
from . import method_stats

CONTROL = "fixed"  # the control of tuned rules; untuned baselines are paired with its untuned baseline
PAIR_KEY = ("dataset", "test_dataset", "ways", "shots", "algorithm")
COLUMNS = PAIR_KEY + ("rule", "control", "n_seeds", "seeds", "n_tasks", "distinct_tasks", "n_classes",
                      "mean", "seed_sd", "seed_ci95", "seed_low", "seed_high", "boot_low", "boot_high",
                      "poi", "poi_low", "poi_high", "verdict")
WITHIN_COLUMNS = PAIR_KEY + ("rule", "control", "seed", "n_tasks", "mean", "ci95", "low", "high", "p_value")
BETTER, WORSE, UNCLEAR, ONE_SEED = "better", "worse", "no difference shown", "n/a (one seed)"
VERDICTS = (BETTER, WORSE, UNCLEAR, ONE_SEED)


def verdict(seed_low: float, seed_high: float, boot_low: float, boot_high: float) -> str:
    """BETTER (WORSE) when the interval across seeds and the bootstrap interval both lie above (below) 0;
    ONE_SEED when they are undefined; UNCLEAR otherwise."""
    bounds = (seed_low, seed_high, boot_low, boot_high)
    if not all(method_stats.is_defined(b) for b in bounds):
        return ONE_SEED
    if seed_low > 0 and boot_low > 0:
        return BETTER
    if seed_high < 0 and boot_high < 0:
        return WORSE
    return UNCLEAR


def _class_matrix(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(test classes, [seeds x classes] accuracies) of one method's runs, in the order of ``rows``."""
    scored = []
    for row in rows:
        if not row[agg.PER_TASK_CLASSES] or not row[agg.PER_TASK_CLASS_ACCURACY]:
            raise ValueError(f"{row['metrics_path']}: no per-class accuracies (written by the evaluation since "
                             f"class-level statistics exist); re-run its evaluation")
        scored.append(method_stats.class_scores(row[agg.PER_TASK_CLASSES], row[agg.PER_TASK_CLASS_ACCURACY]))
    classes = scored[0][0]
    for row, (other, _) in zip(rows, scored):
        if not np.array_equal(other, classes):
            raise ValueError(f"{row['metrics_path']}: its tasks hold other test classes than "
                             f"{rows[0]['metrics_path']}'s; evaluate both on the same task list")
    return classes, np.stack([scores for _, scores in scored])


def control_of(rule: str) -> str:
    """The fixed rule a rule is compared with: tuned with tuned, an untuned baseline with the untuned fixed rule."""
    return CONTROL + UNTUNED_SUFFIX if is_untuned(rule) else CONTROL


def _pairs(runs: pd.DataFrame):
    """(key, [(rule row, fixed row)] by seed) per PAIR_KEY + rule with at least one fixed-rule partner."""
    controls = {tuple(r[k] for k in PAIR_KEY) + (r["rule"], int(r["seed"])): r
                for r in runs[runs["rule"].map(base_rule) == CONTROL].to_dict("records")}
    treated = runs[runs["rule"].map(base_rule) != CONTROL]
    for key, group in treated.groupby(list(PAIR_KEY) + ["rule"], sort=False):
        pairs = []
        for row in sorted(group.to_dict("records"), key=lambda r: int(r["seed"])):
            control = controls.get(key[:-1] + (control_of(key[-1]), int(row["seed"])))
            if control is None:
                continue
            if row["task_list_sha256"] != control["task_list_sha256"]:
                raise ValueError(
                    f"cannot pair {row['run_id']} with {control['run_id']} on {row['test_dataset']}: task lists "
                    f"differ (sha256 {row['task_list_sha256'][:12]}... vs {control['task_list_sha256'][:12]}...); "
                    f"evaluate both on the same task list")
            pairs.append((row, control))
        if pairs:
            yield key, pairs


def _sorted(df: pd.DataFrame, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    if df.empty:
        return df
    order = sorted(range(len(df)), key=lambda i: (
        df["dataset"].iat[i], df["test_dataset"].iat[i], int(df["ways"].iat[i]), int(df["shots"].iat[i]),
        agg.algorithm_rank(df["algorithm"].iat[i]), agg.rule_rank(df["rule"].iat[i]),
        *(df[c].iat[i] for c in extra)))
    return df.iloc[order].reset_index(drop=True)


def paired(runs: pd.DataFrame, resamples: int, seed: int) -> pd.DataFrame:
    """The verdict per (PAIR_KEY, rule) with a fixed-rule partner: the COLUMNS (differences as fractions).

    ``mean``: mean over the paired seeds of each seed's mean over tasks of rule - fixed; ``seed_*``: the
    spread and Student-t interval across seeds; ``boot_*``, ``poi*``: method_stats.compare on the
    [seeds x test classes] class accuracies with ``resamples`` replicates seeded by ``seed``; ``seeds``:
    the paired seeds, space-separated. Raises ValueError when a pair's task lists differ or its per-task
    (or, with several seeds, per-class) scores are missing.
    """
    out = []
    for key, pairs in _pairs(runs):
        seed_diffs = [float(np.mean(agg.per_task_scores(row) - agg.per_task_scores(control))) for row, control in pairs]
        spread = method_stats.seed_interval(seed_diffs)
        n_classes = float("nan")
        compared = {k: float("nan") for k in ("boot_low", "boot_high", "poi", "poi_low", "poi_high")}
        if len(pairs) > 1:
            classes, treatment = _class_matrix([row for row, _ in pairs])
            control_classes, control = _class_matrix([control for _, control in pairs])
            if not np.array_equal(classes, control_classes):
                raise ValueError(f"{pairs[0][0]['metrics_path']} and {pairs[0][1]['metrics_path']} hold other test "
                                 f"classes; evaluate both on the same task list")
            n_classes = classes.size
            compared = method_stats.compare(treatment, control, resamples, seed)
        first = pairs[0][0]
        out.append(dict(
            zip(PAIR_KEY + ("rule",), key), control=control_of(key[-1]), n_seeds=len(pairs),
            seeds=" ".join(str(int(row["seed"])) for row, _ in pairs), n_tasks=int(first["accuracy_n_tasks"]),
            distinct_tasks=int(first["task_list_distinct_tasks"]), n_classes=n_classes, mean=spread["mean"],
            seed_sd=spread["sd"], seed_ci95=spread["ci95"], seed_low=spread["low"], seed_high=spread["high"],
            **compared, verdict=verdict(spread["low"], spread["high"], compared["boot_low"], compared["boot_high"])))
    df = pd.DataFrame(out, columns=list(COLUMNS))
    if not df.empty:
        df["n_classes"] = df["n_classes"].astype("Int64")  # n/a with one seed, an integer otherwise
    return _sorted(df)


def within_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """The per-task paired t-test of each seed's rule and fixed-rule networks: the WITHIN_COLUMNS (fractions)."""
    out = []
    for key, pairs in _pairs(runs):
        for row, control in pairs:
            stats = paired_difference(agg.per_task_scores(row), agg.per_task_scores(control))
            out.append(dict(zip(PAIR_KEY + ("rule",), key), control=CONTROL, seed=int(row["seed"]),
                            **{k: stats[k] for k in ("n_tasks", "mean", "ci95", "low", "high", "p_value")}))
    return _sorted(pd.DataFrame(out, columns=list(WITHIN_COLUMNS)), extra=("seed",))


def paired_csv(df: pd.DataFrame) -> str:
    """paired.csv / paired_within_seed.csv; values that one seed cannot give are written n/a."""
    return df.to_csv(index=False, lineterminator="\n", na_rep="n/a")
