"""Paired statistics: every step-size rule against the fixed rule, task by task.

All methods of one (test dataset, ways, shots) are scored on the same frozen task list, so the
difference rule - fixed is taken per task, which removes the task-difficulty variance that two
independent intervals would count twice. A rule is paired with the ``fixed`` run of the same training
dataset, test dataset, ways, shots, algorithm and seed. Several seeds are combined by averaging the
per-task differences over the seeds paired in both runs (the tasks are the same for every seed), and
the paired 95% CI and t-test are taken over those per-task means: the n is the number of tasks.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from metalr.evaluate.stats import paired_difference

from . import aggregate as agg

CONTROL = "fixed"
PAIR_KEY = ("dataset", "test_dataset", "ways", "shots", "algorithm")
COLUMNS = PAIR_KEY + ("rule", "control", "n_seeds", "n_tasks", "mean", "ci95", "low", "high", "p_value")


def _per_task(row: dict) -> np.ndarray:
    scores = np.asarray(row[agg.PER_TASK], dtype=np.float64)
    if scores.size != int(row["accuracy_n_tasks"]):
        raise ValueError(f"{row['metrics_path']}: {scores.size} per-task accuracies for n_tasks = "
                         f"{row['accuracy_n_tasks']}; re-run its evaluation")
    return scores


def paired(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (PAIR_KEY, rule) with a fixed-rule partner: mean of rule - fixed over tasks (fraction),
    its paired 95% CI (ci95, low, high), the paired t-test's p-value, n_seeds and n_tasks.

    Raises ValueError when a pair's task-list hashes differ or its per-task scores are missing.
    """
    out = []
    controls = {tuple(r[k] for k in PAIR_KEY) + (int(r["seed"]),): r
                for r in runs[runs["rule"] == CONTROL].to_dict("records")}
    treated = runs[runs["rule"] != CONTROL]
    for key, group in treated.groupby(list(PAIR_KEY) + ["rule"], sort=False):
        diffs = []
        for row in group.to_dict("records"):
            control = controls.get(key[:-1] + (int(row["seed"]),))
            if control is None:
                continue
            if row["task_list_sha256"] != control["task_list_sha256"]:
                raise ValueError(
                    f"cannot pair {row['run_id']} with {control['run_id']} on {row['test_dataset']}: task lists "
                    f"differ (sha256 {row['task_list_sha256'][:12]}... vs {control['task_list_sha256'][:12]}...); "
                    f"evaluate both on the same task list")
            diffs.append(_per_task(row) - _per_task(control))
        if not diffs:
            continue
        mean_diff = np.mean(diffs, axis=0)  # per task, averaged over the paired seeds
        stats = paired_difference(mean_diff, np.zeros_like(mean_diff))
        out.append(dict(zip(PAIR_KEY + ("rule",), key), control=CONTROL, n_seeds=len(diffs),
                        n_tasks=stats["n_tasks"], **{k: stats[k] for k in ("mean", "ci95", "low", "high", "p_value")}))
    df = pd.DataFrame(out, columns=list(COLUMNS))
    if df.empty:
        return df
    order = sorted(range(len(df)), key=lambda i: (
        df["dataset"].iat[i], df["test_dataset"].iat[i], int(df["ways"].iat[i]), int(df["shots"].iat[i]),
        agg.algorithm_rank(df["algorithm"].iat[i]), agg.rule_rank(df["rule"].iat[i])))
    return df.iloc[order].reset_index(drop=True)


def paired_csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, lineterminator="\n")
