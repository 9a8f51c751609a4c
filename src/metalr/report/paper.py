"""The paper's Tables 1-3 (config ``report.paper_results``) against this experiment, cell by cell.

A paper cell is (table, train dataset, test dataset, ways, shots, algorithm, rule) with an accuracy
and a 95% CI in percent. Ours is the table cell of the same key (mean over seeds and its ± term).
A cell *reproduces* when the two 95% intervals overlap: |ours - paper| <= ci_ours + ci_paper.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import aggregate as agg

PAPER_COLUMNS = ("table", "train_dataset", "test_dataset", "algorithm", "step_rule", "ways", "shots",
                 "accuracy_pct", "ci95_pct")
KEY = ("dataset", "test_dataset", "ways", "shots", "algorithm", "rule")
COLUMNS = ("table",) + KEY + ("paper_mean", "paper_ci95", "ours_mean", "ours_ci95", "difference", "overlap")


def load_paper_results(path: Path) -> pd.DataFrame:
    """Read the paper's numbers (comment lines start with '#'); ValueError naming the file and the key."""
    path = Path(path)
    where = f"{path} (config report.paper_results)"
    if not path.is_file():
        raise ValueError(f"{where} does not exist; point report.paper_results at the paper's results CSV")
    df = pd.read_csv(path, comment="#")
    missing = [c for c in PAPER_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; expected {list(PAPER_COLUMNS)}")
    df = df.rename(columns={"train_dataset": "dataset", "step_rule": "rule",
                            "accuracy_pct": "paper_mean", "ci95_pct": "paper_ci95"})
    bad = df[df[["paper_mean", "paper_ci95"]].isna().any(axis=1)]
    if not bad.empty:
        raise ValueError(f"{where}: rows {list(bad.index + 2)} lack an accuracy or a CI")
    for col in ("table", "ways", "shots"):
        df[col] = df[col].astype(int)
    if df.duplicated(subset=list(KEY)).any():
        raise ValueError(f"{where}: a (train, test, ways, shots, algorithm, rule) cell is listed twice")
    return df[["table", *KEY, "paper_mean", "paper_ci95"]]


def compare(cells: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Every paper cell with ours where this experiment has it (NaN otherwise), percent; sorted by
    table, train, test, ways, shots, paper algorithm order, rule order."""
    ours = {tuple(c[k] for k in KEY): c for c in cells.to_dict("records")}
    rows = []
    for p in paper.to_dict("records"):
        c = ours.get(tuple(p[k] for k in KEY))
        row = {k: p[k] for k in ("table",) + KEY + ("paper_mean", "paper_ci95")}
        if c is None:
            row.update(ours_mean=float("nan"), ours_ci95=float("nan"), difference=float("nan"), overlap=None)
        else:
            mean, ci = 100.0 * c["mean"], 100.0 * c["ci95"]
            diff = mean - p["paper_mean"]
            row.update(ours_mean=mean, ours_ci95=ci, difference=diff, overlap=abs(diff) <= ci + p["paper_ci95"])
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    order = sorted(range(len(df)), key=lambda i: (
        int(df["table"].iat[i]), df["dataset"].iat[i], df["test_dataset"].iat[i], int(df["ways"].iat[i]),
        int(df["shots"].iat[i]), agg.algorithm_rank(df["algorithm"].iat[i]), agg.rule_rank(df["rule"].iat[i])))
    return df.iloc[order].reset_index(drop=True)


def counts(comparison: pd.DataFrame) -> dict[str, int]:
    """cells (in the paper), run (here), reproduced (intervals overlap), not_run."""
    run = comparison["overlap"].notna()
    return {"cells": len(comparison), "run": int(run.sum()),
            "reproduced": int((comparison["overlap"] == True).sum()),  # noqa: E712 (None-safe)
            "not_run": int((~run).sum())}
