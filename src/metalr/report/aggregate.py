"""Collect per-run metrics JSON files into a pandas table, and reduce it to table cells.

A row is one evaluation: the trained run (``dataset`` = training dataset) scored on the test tasks of
``test_dataset`` (``evaluation.dataset`` in the metrics file; the training dataset when absent). Rows
with ``test_dataset != dataset`` are cross-domain evaluations.

Display order follows the paper's Table 1: ANIL, MAML, FOMAML (then any other algorithm,
alphabetically); within an algorithm the ``fixed`` rule first, then ``mlplr``, then any other rule.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np
import pandas as pd

from metalr.algorithms import ALGORITHMS
from metalr.config import base_rule, is_untuned
from metalr.evaluate.stats import mean_ci95
from metalr.io import read_json
from metalr.steprules import RULES

from .method_stats import seed_interval

ALGORITHM_ORDER = ("anil", "maml", "fomaml")
RULE_ORDER = ("fixed", "mlplr")

RUN_FIELDS = ("experiment", "dataset", "algorithm", "rule", "ways", "shots", "seed", "run_id")
COLUMNS = RUN_FIELDS + (
    "test_dataset",
    "task_pool",
    "accuracy_mean",
    "accuracy_ci95",
    "accuracy_std",
    "accuracy_n_tasks",
    "inner_steps",
    "task_list_path",
    "task_list_sha256",
    "task_list_distinct_tasks",
    "config_digest",
    "lambda_mean",
    "lambda_min",
    "lambda_max",
    "metrics_path",
)
SETTING = ("dataset", "test_dataset", "ways", "shots")
# One frozen task list per test dataset, ways, shots and class pool: "" = every test class (in-domain), or
# "unseen by <dataset>" = the test classes a cross-domain training dataset did not meta-train on.
TASKS = ("test_dataset", "ways", "shots", "task_pool")
METHOD = ("algorithm", "rule")
PER_TASK = "per_task_accuracy"  # kept in the frame for paired statistics, not written to summary.csv
UNSEEN = "unseen_by"  # a cross-domain list's left-out classes (evaluation.unseen_by), kept for the table notes
# class-level scores (metalr.report.method_stats), kept in the frame like PER_TASK; empty in older metrics files
PER_TASK_CLASSES = "per_task_classes"
PER_TASK_CLASS_ACCURACY = "per_task_class_accuracy"
HIDDEN = (PER_TASK, PER_TASK_CLASSES, PER_TASK_CLASS_ACCURACY, UNSEEN)
CELL_COLUMNS = SETTING + METHOD + ("n_seeds", "mean", "ci95", "seed_sd", "seed_ci95", "n_tasks", "distinct_tasks")


def algorithm_rank(name: str) -> tuple[int, str]:
    return (ALGORITHM_ORDER.index(name), "") if name in ALGORITHM_ORDER else (len(ALGORITHM_ORDER), name)


def rule_rank(name: str) -> tuple[int, str]:
    return (RULE_ORDER.index(name), "") if name in RULE_ORDER else (len(RULE_ORDER), name)


def algorithm_label(name: str) -> str:
    """The algorithm's label, declared in its module's SPEC (KeyError for an unknown name)."""
    return ALGORITHMS[name].label


def rule_label(name: str) -> str:
    """The rule's label, declared in its module's SPEC, marked for an untuned baseline (KeyError for an
    unknown name)."""
    label = RULES[base_rule(name)].label
    return f"{label} (untuned)" if is_untuned(name) else label


def method_label(algorithm: str, rule: str) -> str:
    """'MAML' for the fixed rule, 'MAML + MLPLR' otherwise, '(untuned)' marking an untuned baseline (plain
    text, not TeX-escaped)."""
    base = algorithm_label(algorithm)
    if base_rule(rule) == "fixed":
        return f"{base} (untuned)" if is_untuned(rule) else base
    return f"{base} + {rule_label(rule)}"


def _finite(values: Iterable[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _row(path: Path) -> dict:
    data = read_json(path)
    try:
        run = data["run"]
        acc = data["accuracy"]
        row = {field: run[field] for field in RUN_FIELDS}
        row.update(
            accuracy_mean=float(acc["mean"]),
            accuracy_ci95=float(acc["ci95"]),
            accuracy_std=float(acc["std"]),
            accuracy_n_tasks=int(acc["n_tasks"]),
            inner_steps=int(data["inner_steps"]),
            task_list_path=str(data["task_list"]["path"]),
            task_list_sha256=str(data["task_list"]["sha256"]),
            task_list_distinct_tasks=int(data["task_list"]["distinct_tasks"]),
            config_digest=str(data.get("config_digest", "")),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a metrics file (missing {exc})") from exc
    for key in ("ways", "shots", "seed"):
        row[key] = int(row[key])
    evaluation = data.get("evaluation") or {}
    row["test_dataset"] = str(evaluation.get("dataset", row["dataset"]))
    for key in ("ways", "shots"):
        if int(evaluation.get(key, row[key])) != row[key]:
            raise ValueError(f"{path}: evaluation.{key} = {evaluation[key]} differs from run.{key} = {row[key]}; "
                             f"a model is evaluated at the ways and shots it was trained for")
    row[PER_TASK] = tuple(float(a) for a in data.get(PER_TASK) or ())
    row[UNSEEN] = evaluation.get("unseen_by") or {}
    row["task_pool"] = f"unseen by {row[UNSEEN]['dataset']}" if row[UNSEEN] else ""
    row[PER_TASK_CLASSES] = tuple(tuple(int(c) for c in task) for task in data.get(PER_TASK_CLASSES) or ())
    row[PER_TASK_CLASS_ACCURACY] = tuple(tuple(float(a) for a in task)
                                         for task in data.get(PER_TASK_CLASS_ACCURACY) or ())
    lam = data.get("lambda") or {}
    means = _finite(lam.get("mean_per_step") or [])
    mins = _finite(lam.get("min_per_step") or []) or means
    maxs = _finite(lam.get("max_per_step") or []) or means
    row["lambda_mean"] = sum(means) / len(means) if means else float("nan")
    row["lambda_min"] = min(mins) if mins else float("nan")
    row["lambda_max"] = max(maxs) if maxs else float("nan")
    row["metrics_path"] = Path(path).as_posix()
    return row


def sort_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Deterministic order: experiment, dataset, test dataset, ways, shots, paper algorithm order, rule order, seed, run_id."""
    if df.empty:
        return df.reset_index(drop=True)
    keys = df.assign(
        _alg=df["algorithm"].map(algorithm_rank), _rule=df["rule"].map(rule_rank)
    )
    order = sorted(
        range(len(keys)),
        key=lambda i: (
            keys["experiment"].iat[i],
            keys["dataset"].iat[i],
            keys["test_dataset"].iat[i],
            int(keys["ways"].iat[i]),
            int(keys["shots"].iat[i]),
            keys["_alg"].iat[i],
            keys["_rule"].iat[i],
            int(keys["seed"].iat[i]),
            keys["run_id"].iat[i],
            keys["metrics_path"].iat[i],
        ),
    )
    return df.iloc[order].reset_index(drop=True)


def collect(metrics_paths: list[Path]) -> pd.DataFrame:
    """One row per metrics file: run fields, test dataset, accuracy_mean/ci95/std/n_tasks (fractions),
    task-list hash and distinct tasks, eval λ summary, the metrics path (the columns of summary.csv:
    COLUMNS), the per-task accuracies and the per-task classes with their accuracies (HIDDEN); sorted
    deterministically. Raises ValueError on a run evaluated twice on one test set."""
    rows = [_row(Path(p)) for p in metrics_paths]
    df = pd.DataFrame(rows, columns=list(COLUMNS + HIDDEN))
    twice = df.duplicated(subset=["experiment", "run_id", "test_dataset"], keep=False)
    if twice.any():
        dup = sorted({f"{r.run_id} on {r.test_dataset}" for r in df[twice].itertuples()})
        raise ValueError(f"run(s) given more than once: {dup}")
    return sort_runs(df)


def summary_csv(df: pd.DataFrame) -> str:
    """summary.csv: one line per evaluation, the COLUMNS (per-task accuracies stay in the metrics files)."""
    return df[list(COLUMNS)].to_csv(index=False, lineterminator="\n")


def column_label(dataset: str, test_dataset: str) -> str:
    """Plain-text table column group: the dataset in-domain, 'train → test' cross-domain."""
    return dataset if dataset == test_dataset else f"{dataset} → {test_dataset}"


def settings(df: pd.DataFrame) -> list[tuple[str, str, int, int]]:
    """Table columns: (dataset, test_dataset, ways, shots), sorted."""
    return sorted({(r.dataset, r.test_dataset, int(r.ways), int(r.shots)) for r in df.itertuples()})


def methods(df: pd.DataFrame) -> list[tuple[str, str]]:
    """Table rows: (algorithm, rule) in paper order."""
    pairs = {(r.algorithm, r.rule) for r in df.itertuples()}
    return sorted(pairs, key=lambda p: (algorithm_rank(p[0]), rule_rank(p[1])))


class TaskListFacts(NamedTuple):
    sha256: str
    n_tasks: int
    distinct_tasks: int  # tasks that differ (a small split repeats tasks): metalr.data.episodes.distinct_tasks


def check_same_tasks(df: pd.DataFrame) -> dict[tuple[str, int, int, str], TaskListFacts]:
    """Every evaluation on one (test dataset, ways, shots, task pool) must use the same task list, whichever
    dataset the model was trained on; returns (test_dataset, ways, shots, task_pool) -> its TaskListFacts."""
    out = {}
    for key, group in df.groupby(list(TASKS), sort=True):
        hashes = sorted(set(group["task_list_sha256"]))
        n_tasks = sorted(set(int(n) for n in group["accuracy_n_tasks"]))
        distinct = sorted(set(int(n) for n in group["task_list_distinct_tasks"]))
        if len(hashes) != 1 or len(n_tasks) != 1 or len(distinct) != 1:
            raise ValueError(
                f"test set {key}: runs were evaluated on different task lists "
                f"(sha256 {hashes}, n_tasks {n_tasks}, distinct tasks {distinct}); the tables compare methods on "
                f"identical tasks only"
            )
        out[(str(key[0]), int(key[1]), int(key[2]), str(key[3]))] = TaskListFacts(hashes[0], n_tasks[0],
                                                                                  distinct[0])
    return out


def task_list_label(test_dataset: str, ways: int, shots: int, pool: str) -> str:
    return f"{test_dataset} {ways}-way {shots}-shot" + (f" ({pool})" if pool else "")


def exclusion_notes(df: pd.DataFrame) -> list[str]:
    """One sentence per cross-domain (train, test) pair: which test classes were left out as meta-train
    classes of the training dataset, and how many remain."""
    notes = {}
    for row in df.itertuples():
        unseen = getattr(row, UNSEEN)
        if not unseen:
            continue
        excluded = [e["wordnet_id"] or e["class"] for e in unseen["excluded"]]
        if excluded:
            text = (f"{len(excluded)} of the {unseen['classes_total']} test classes of {row.test_dataset} are "
                    f"meta-train classes of {row.dataset} (same {unseen['matched_by']}: {', '.join(excluded)}) and "
                    f"were left out; {unseen['classes_remaining']} remain.")
        elif unseen["classes_with_wordnet_id"] == 0:
            text = (f"The test classes of {row.test_dataset} carry no {unseen['matched_by']}, so none could be "
                    f"matched with the meta-train classes of {row.dataset}; all {unseen['classes_total']} are used.")
        else:
            text = (f"No test class of {row.test_dataset} is a meta-train class of {row.dataset} (same "
                    f"{unseen['matched_by']}); all {unseen['classes_total']} are used.")
        notes[(row.dataset, row.test_dataset)] = text
    return [notes[key] for key in sorted(notes)]


def per_task_scores(row: dict) -> np.ndarray:
    """[n_tasks] float64 per-task accuracies of one run (a row of ``collect``); ValueError when they are missing."""
    scores = np.asarray(row[PER_TASK], dtype=np.float64)
    if scores.size != int(row["accuracy_n_tasks"]):
        raise ValueError(f"{row['metrics_path']}: {scores.size} per-task accuracies for n_tasks = "
                         f"{row['accuracy_n_tasks']}; re-run its evaluation")
    return scores


def cells(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, test_dataset, ways, shots, algorithm, rule): the CELL_COLUMNS.

    ``mean``: the mean over seeds of each seed's mean accuracy. ``ci95``: the per-task 95% interval,
    with one seed the run's own (Student t over its tasks), with several the Student-t interval over the
    tasks of the per-task accuracies averaged over the seeds (every seed is scored on the same tasks).
    ``seed_sd``: the sample sd of the seed means, the spread across seeds; ``seed_ci95``: the half-width of
    the Student-t interval of their mean (n_seeds - 1 df); both NaN (n/a) with one seed. Fractions.
    """
    tasks = check_same_tasks(df)
    out = []
    for key, group in df.groupby(list(SETTING + METHOD), sort=True):
        rows = group.to_dict("records")
        if len(rows) == 1:
            ci = float(rows[0]["accuracy_ci95"])
        else:
            ci = mean_ci95(np.mean([per_task_scores(r) for r in rows], axis=0))["ci95"]
        spread = seed_interval([float(r["accuracy_mean"]) for r in rows])
        facts = tasks[(str(key[1]), int(key[2]), int(key[3]), str(rows[0]["task_pool"]))]
        out.append(dict(zip(SETTING + METHOD, (str(key[0]), str(key[1]), int(key[2]), int(key[3]), str(key[4]),
                                                str(key[5]))),
                        n_seeds=len(rows), mean=spread["mean"], ci95=ci, seed_sd=spread["sd"],
                        seed_ci95=spread["ci95"], n_tasks=facts.n_tasks, distinct_tasks=facts.distinct_tasks))
    return pd.DataFrame(out, columns=list(CELL_COLUMNS))


def cells_csv(cells_df: pd.DataFrame) -> str:
    """cells.csv: one line per table cell, the CELL_COLUMNS; across-seed values of one-seed cells are n/a."""
    return cells_df.to_csv(index=False, lineterminator="\n", na_rep="n/a")
