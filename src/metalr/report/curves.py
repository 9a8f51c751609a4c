"""What DVC shows and compares between commits: one flat summary (``dvc metrics``) and the curves
(``dvc plots``), a CSV column per run or evaluation, named as ``metalr.stages`` names them in dvc.yaml."""
from __future__ import annotations

import csv
import io as _io
from pathlib import Path
from typing import Sequence

import pandas as pd

from metalr.config import Run
from metalr.io import canonical_json, read_json
from metalr.stages import evaluation_label

from .figures import TrainLog


def _run(fields) -> Run:
    get = fields.get if isinstance(fields, dict) else lambda key: getattr(fields, key)
    return Run(get("dataset"), int(get("ways")), int(get("shots")), get("algorithm"), get("rule"), int(get("seed")))


def _label(row) -> str:
    return evaluation_label(_run(row), row.test_dataset)


def metrics_summary(runs: pd.DataFrame) -> str:
    """metrics.json: per evaluation, its mean accuracy and 95% CI over test tasks (fractions)."""
    return canonical_json({_label(r): {"accuracy": round(float(r.accuracy_mean), 6),
                                       "ci95": round(float(r.accuracy_ci95), 6)} for r in runs.itertuples()})


def _csv(index: str, columns: Sequence[str], series: dict[str, dict[int, float]]) -> str:
    """``columns`` (the config's, which dvc.yaml names) then any other series; empty cells where a series has
    no value (a run whose results are missing, or shorter curves)."""
    columns = list(columns) + sorted(set(series) - set(columns))
    series = {c: series.get(c, {}) for c in columns}
    rows = sorted({x for values in series.values() for x in values})
    out = _io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([index, *columns])
    for x in rows:
        writer.writerow([x, *("" if x not in series[c] else repr(round(series[c][x], 6)) for c in columns)])
    return out.getvalue()


def training_curve(logs: list[TrainLog], field: str, columns: Sequence[str]) -> str:
    """training_<field>.csv: ``iteration`` and one column per run (its logged window means of ``field``,
    'query_loss' or 'query_accuracy')."""
    return _csv("iteration", columns, {_run(t.run).run_id: dict(zip(t.iterations, getattr(t, field))) for t in logs})


def stepsizes(runs: pd.DataFrame, columns: Sequence[str]) -> str:
    """stepsizes.csv: ``step`` (1-based inner step) and one column per evaluation: its mean step size λ
    over the test tasks at that step."""
    series = {}
    for r in runs.itertuples():
        means = read_json(Path(r.metrics_path)).get("lambda", {}).get("mean_per_step") or []
        series[_label(r)] = {step: float(v) for step, v in enumerate(means, start=1) if v is not None}
    return _csv("step", columns, series)
