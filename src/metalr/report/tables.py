"""Accuracy tables like the paper's: the in-domain tables of config ``report.tables`` (Tables 1-2), one
more for in-domain runs of datasets no configured table lists, and the cross-domain table (Table 3).

Rows are methods (algorithm x step-size rule), columns (train dataset [-> test dataset]) x ways x shots.
Every table is rendered by one template, accuracy_tables.tex.j2; empty tables are left out, and a file
with no table says so in a sentence (the output names are fixed: tables.tex, cross_domain_table.tex).
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping, Sequence

import pandas as pd

from . import aggregate as agg
from .latex import MISSING, SHORT_HASH, latex_escape, or_na, pct

OTHER = {"name": "other_datasets", "caption": "the other datasets of this experiment"}
CROSS = {"name": "cross_domain",
         "caption": "cross-domain few-shot classification (trained on the dataset left of the arrow, "
                    "tested on the test tasks of the one right of it)"}


def label(name: str) -> str:
    return f"tab:{name}"


def in_domain(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["dataset"] == runs["test_dataset"]]


def cross_domain(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["dataset"] != runs["test_dataset"]]


def in_domain_tables(runs: pd.DataFrame, configured: Sequence[Mapping[str, Any]]) -> list[tuple[dict, pd.DataFrame]]:
    """(table spec, its runs) for each configured table with runs, in config order, then the rest."""
    own = in_domain(runs)
    out, listed = [], set()
    for spec in configured:
        listed |= set(spec["datasets"])
        rows = own[own["dataset"].isin(spec["datasets"])]
        if not rows.empty:
            out.append((dict(spec), rows))
    rest = own[~own["dataset"].isin(listed)]
    if not rest.empty:
        out.append((dict(OTHER), rest))
    return out


def column_group_tex(dataset: str, test_dataset: str) -> str:
    if dataset == test_dataset:
        return latex_escape(dataset)
    return f"{latex_escape(dataset)} $\\rightarrow$ {latex_escape(test_dataset)}"


def table_model(runs: pd.DataFrame, spec: Mapping[str, Any], experiment: str) -> dict:
    """Everything one table of accuracy_tables.tex.j2 needs: column groups, rows of TeX cells, caption facts."""
    tasks = agg.check_same_tasks(runs)
    cells = agg.cells(runs)
    cols = agg.settings(runs)  # (dataset, test_dataset, ways, shots)
    rows = agg.methods(runs)
    all_ways = sorted({c[2] for c in cols})
    multi_ways = len(all_ways) > 1
    max_seeds = int(cells["n_seeds"].max())
    lookup = {(c.dataset, c.test_dataset, int(c.ways), int(c.shots), c.algorithm, c.rule): c
              for c in cells.itertuples()}
    # best per column on the value as displayed (ties are all bold)
    best = {col: max((Decimal(pct(lookup[col + m].mean)) for m in rows if col + m in lookup), default=None)
            for col in cols}

    body, prev_alg = [], None
    for alg, rule in rows:
        row_cells = []
        for col in cols:
            c = lookup.get(col + (alg, rule))
            if c is None:
                row_cells.append(MISSING)
                continue
            text = f"{pct(c.mean)} $\\pm$ {pct(c.ci95)}"
            if max_seeds > 1:  # the spread across seeds beside the per-task interval
                text += f" ({or_na(pct(c.seed_sd))})"
            row_cells.append(f"\\textbf{{{text}}}" if Decimal(pct(c.mean)) == best[col] else text)
        body.append({"label": agg.method_label(alg, rule), "cells": row_cells,
                     "new_group": prev_alg is not None and alg != prev_alg})
        prev_alg = alg

    # header groups: (train, test) -> (ways ->) shots
    groups, start = [], 2
    for group in sorted({c[:2] for c in cols}):
        g_cols = [c for c in cols if c[:2] == group]
        ways, wstart = [], start
        for w in sorted({c[2] for c in g_cols}):
            span = sum(1 for c in g_cols if c[2] == w)
            ways.append({"ways": w, "span": span, "first": wstart, "last": wstart + span - 1})
            wstart += span
        groups.append({"tex": column_group_tex(*group), "span": len(g_cols), "first": start,
                       "last": start + len(g_cols) - 1, "ways": ways})
        start += len(g_cols)

    task_keys = sorted({(c[1], c[2], c[3]) for c in cols})
    n_tasks = sorted({tasks[k].n_tasks for k in task_keys})
    return {
        "experiment": experiment,
        "caption": spec["caption"],
        "label": label(spec["name"]),
        "groups": groups,
        "multi_ways": multi_ways,
        "ways": None if multi_ways else all_ways[0],
        "shots": [c[3] for c in cols],
        "colspec": "l" + "c" * len(cols),
        "rows": body,
        "n_tasks": n_tasks[0] if len(n_tasks) == 1 else None,
        "task_lists": [{"label": f"{d} {w}-way {s}-shot", "n_tasks": tasks[(d, w, s)].n_tasks,
                        "distinct": tasks[(d, w, s)].distinct_tasks, "hash": tasks[(d, w, s)].sha256[:SHORT_HASH]}
                       for d, w, s in task_keys],
        "repeats": any(tasks[k].distinct_tasks < tasks[k].n_tasks for k in task_keys),
        "max_seeds": max_seeds,
        "min_seeds": int(cells["n_seeds"].min()),
        "resize": len(cols) > 6,
    }


def tables_context(tables: list[tuple[dict, pd.DataFrame]], experiment: str, empty: str) -> dict:
    return {"tables": [table_model(rows, spec, experiment) for spec, rows in tables], "empty": empty}


def table_refs(labels: list[str]) -> str:
    """'Table~\\ref{a}', 'Tables~\\ref{a} and~\\ref{b}', 'Tables~\\ref{a}, \\ref{b} and~\\ref{c}'."""
    refs = [f"\\ref{{{name}}}" for name in labels]
    if not refs:
        return "no table"
    if len(refs) == 1:
        return f"Table~{refs[0]}"
    return "Tables~" + ", ".join(refs[:-1]) + f" and~{refs[-1]}"
