"""LaTeX generation: escaping, macro names, the Jinja environment, Table 1 and macros.tex.

Templates live in ``paper/templates`` (``*.tex.j2``) and use delimiters that do not clash with TeX:
blocks ``((* ... *))``, variables ``((( ... )))``, comments ``((= ... =))``. Nothing is escaped
implicitly: text goes through the explicit ``latex_escape`` filter, pre-built TeX (cells) does not.
"""
from __future__ import annotations

import hashlib
import math
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import jinja2
import pandas as pd

from . import aggregate as agg

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATES_DIR = REPO_ROOT / "paper" / "templates"
MISSING = "--"
SHORT_HASH = 8

_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\ensuremath{<}",
    ">": r"\ensuremath{>}",
    "|": r"\ensuremath{|}",
}
_ESCAPE_RE = re.compile("|".join(re.escape(k) for k in _ESCAPES))


def latex_escape(text: object) -> str:
    """Escape text for TeX's text mode (all ten special characters plus < > |)."""
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], str(text))


# --------------------------------------------------------------------------- numbers and names

_ONES = ("Zero One Two Three Four Five Six Seven Eight Nine Ten Eleven Twelve Thirteen Fourteen "
         "Fifteen Sixteen Seventeen Eighteen Nineteen").split()
_TENS = "_ _ Twenty Thirty Forty Fifty Sixty Seventy Eighty Ninety".split()
_SCALES = ((10**9, "Billion"), (10**6, "Million"), (1000, "Thousand"), (100, "Hundred"))


def number_words(n: int) -> str:
    """12 -> 'Twelve', 105 -> 'OneHundredFive' (CamelCase, letters only: usable in TeX macro names)."""
    n = int(n)
    if n < 0:
        return "Minus" + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + (_ONES[n % 10] if n % 10 else "")
    for scale, word in _SCALES:
        if n >= scale:
            rest = n % scale
            return number_words(n // scale) + word + (number_words(rest) if rest else "")
    raise AssertionError(n)


def name_part(value: object) -> str:
    """Any identifier -> letters only: 'mini_imagenet84' -> 'MiniImagenetEightyFour', 5 -> 'Five'."""
    if isinstance(value, int):
        return number_words(value)
    out = []
    for token in re.findall(r"[A-Za-z]+|[0-9]+", str(value)):
        out.append(number_words(int(token)) if token.isdigit() else token[0].upper() + token[1:].lower())
    return "".join(out)


def macro_name(*parts: object) -> str:
    name = "".join(name_part(p) for p in parts)
    if not re.fullmatch(r"[A-Za-z]+", name):
        raise ValueError(f"cannot build a TeX macro name from {parts!r}")
    return name


def pct(fraction: float) -> str:
    """Fraction -> percent with 2 decimals, rounding half up on the decimal value as written (0.87345 -> 87.35)."""
    if fraction is None or not math.isfinite(float(fraction)):
        return MISSING
    value = Decimal(repr(float(fraction))) * 100
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def num(value: float, digits: int = 3) -> str:
    """A step size etc. with `digits` significant digits ('--' when undefined)."""
    if value is None or not math.isfinite(float(value)):
        return MISSING
    return f"{float(value):.{digits}g}"


def setting_label(dataset: str, ways: int, shots: int) -> str:
    return f"{dataset} {ways}-way {shots}-shot"


# --------------------------------------------------------------------------- Jinja

def make_env(templates_dir: Path | None = None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir or TEMPLATES_DIR)),
        block_start_string="((*",
        block_end_string="*))",
        variable_start_string="(((",
        variable_end_string=")))",
        comment_start_string="((=",
        comment_end_string="=))",
        line_statement_prefix=None,
        line_comment_prefix=None,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["latex_escape"] = latex_escape
    return env


# --------------------------------------------------------------------------- Table 1

def table1_model(runs: pd.DataFrame, experiment: str) -> dict:
    """Everything table1.tex.j2 needs: column groups, rows of pre-formatted TeX cells, caption facts."""
    if runs.empty:
        raise ValueError("no runs to tabulate")
    tasks = agg.check_same_tasks(runs)
    cells = agg.cells(runs)
    cols = agg.settings(runs)
    rows = agg.methods(runs)
    all_ways = sorted({w for _, w, _ in cols})
    multi_ways = len(all_ways) > 1

    lookup = {
        (c.dataset, int(c.ways), int(c.shots), c.algorithm, c.rule): c for c in cells.itertuples()
    }
    # best per column on the value as displayed (ties are all bold)
    best = {}
    for col in cols:
        shown = [pct(lookup[col + m].mean) for m in rows if col + m in lookup]
        best[col] = max((Decimal(s) for s in shown), default=None)

    body = []
    prev_alg = None
    for alg, rule in rows:
        row_cells = []
        for col in cols:
            c = lookup.get(col + (alg, rule))
            if c is None:
                row_cells.append(MISSING)
                continue
            text = f"{pct(c.mean)} $\\pm$ {pct(c.ci95)}"
            if Decimal(pct(c.mean)) == best[col]:
                text = f"\\textbf{{{text}}}"
            row_cells.append(text)
        body.append({
            "label": agg.method_label(alg, rule),
            "cells": row_cells,
            "new_group": prev_alg is not None and alg != prev_alg,
        })
        prev_alg = alg

    # header groups: dataset -> (ways ->) shots
    datasets = []
    for ds in sorted({d for d, _, _ in cols}):
        ds_cols = [c for c in cols if c[0] == ds]
        ways_groups = [
            {"ways": w, "span": sum(1 for c in ds_cols if c[1] == w)}
            for w in sorted({c[1] for c in ds_cols})
        ]
        datasets.append({"name": ds, "span": len(ds_cols), "ways": ways_groups})
    start = 2
    for ds in datasets:
        ds["first"], ds["last"] = start, start + ds["span"] - 1
        wstart = start
        for wg in ds["ways"]:
            wg["first"], wg["last"] = wstart, wstart + wg["span"] - 1
            wstart += wg["span"]
        start += ds["span"]

    n_tasks = sorted({tasks[c][1] for c in cols})
    seeds = sorted({int(n) for n in cells["n_seeds"]})
    return {
        "experiment": experiment,
        "datasets": datasets,
        "multi_ways": multi_ways,
        "ways": all_ways[0] if not multi_ways else None,
        "shots": [c[2] for c in cols],
        "ncols": len(cols),
        "colspec": "l" + "c" * len(cols),
        "rows": body,
        "n_tasks": n_tasks[0] if len(n_tasks) == 1 else None,
        "task_lists": [
            {"label": setting_label(*c), "n_tasks": tasks[c][1], "hash": tasks[c][0][:SHORT_HASH]} for c in cols
        ],
        "max_seeds": seeds[-1],
        "resize": len(cols) > 6,
    }


def task_list_digest(runs: pd.DataFrame) -> str:
    """Short digest over all (setting, task-list hash) pairs: one identifier for the whole table."""
    tasks = agg.check_same_tasks(runs)
    text = "\n".join(f"{d}/{w}/{s}:{h}" for (d, w, s), (h, _) in sorted(tasks.items()))
    if len(tasks) == 1:
        return next(iter(tasks.values()))[0][:SHORT_HASH]
    return hashlib.sha256(text.encode()).hexdigest()[:SHORT_HASH]


def render_table1(runs: pd.DataFrame, experiment: str, templates_dir: Path | None = None) -> str:
    return make_env(templates_dir).get_template("table1.tex.j2").render(**table1_model(runs, experiment))


# --------------------------------------------------------------------------- macros

def _uniform(values, fmt=str) -> str:
    vals = sorted(set(values))
    if not vals:
        return MISSING
    return fmt(vals[0]) if len(vals) == 1 else "varies"


def macros_model(runs: pd.DataFrame, experiment: str, train: list[dict] | None = None) -> list[dict]:
    """Every number the appendix prose uses, as (name, TeX value, comment).

    Always defined (the appendix relies on these): Experiment, NumRuns, NumMethods, NumSettings,
    NumDatasets, NumSeeds, NumTestTasks, EvalInnerSteps, TrainInnerSteps, TaskBatch, TaskListHash,
    BestAcc, BestCi, BestMethod, BestSetting, LambdaFixed, LambdaMlplrMin, LambdaMlplrMax,
    LambdaMlplrMean, NumPairs, NumPairsImproved, MeanGainMlplr.
    Per cell: Acc/Ci<Dataset><Ways>Way<Shots>Shot<Algorithm><Rule>; per setting: BestAcc/BestMethod<...>;
    with a single dataset and ways also the short forms Acc<Algorithm><Rule><Shots>Shot and
    BestAcc<Shots>Shot / BestMethod<Shots>Shot.
    """
    train = train or []
    cells = agg.cells(runs)
    cols = agg.settings(runs)
    tasks = agg.check_same_tasks(runs)
    out: list[dict] = []

    def add(name: str, value: str, comment: str = "") -> None:
        out.append({"name": name, "value": value, "comment": comment})

    add("Experiment", latex_escape(experiment), "experiment name")
    add("NumRuns", str(len(runs)), "evaluated runs (metrics files)")
    add("NumMethods", str(len(agg.methods(runs))), "algorithm x rule rows of Table 1")
    add("NumSettings", str(len(cols)), "dataset x ways x shots columns of Table 1")
    add("NumDatasets", str(len({c[0] for c in cols})), "datasets")
    add("NumSeeds", _uniform(int(n) for n in cells["n_seeds"]), "seeds per cell")
    add("NumTestTasks", _uniform(n for _, n in tasks.values()), "test tasks per setting")
    add("EvalInnerSteps", _uniform(int(s) for s in runs["inner_steps"]), "inner steps at evaluation")
    add("TrainInnerSteps", _uniform(int(t["inner_steps"]) for t in train), "inner steps in training")
    add("TaskBatch", _uniform(int(t["task_batch"]) for t in train), "tasks per meta-batch in training")
    add("TaskListHash", task_list_digest(runs), "short SHA-256 of the task list(s)")

    top = max(cells.itertuples(), key=lambda c: (Decimal(pct(c.mean)), -agg.algorithm_rank(c.algorithm)[0]))
    add("BestAcc", pct(top.mean), "best accuracy in Table 1 (percent)")
    add("BestCi", pct(top.ci95), "its 95% CI (percent)")
    add("BestMethod", latex_escape(agg.method_label(top.algorithm, top.rule)), "method with the best accuracy")
    add("BestSetting", latex_escape(setting_label(top.dataset, top.ways, top.shots)), "its setting")

    fixed = runs[runs["rule"] == "fixed"]
    add("LambdaFixed", _uniform((round(float(v), 12) for v in fixed["lambda_mean"] if math.isfinite(v)), num),
        "step size of the fixed rule")
    mlplr = runs[runs["rule"] == "mlplr"]
    add("LambdaMlplrMin", num(mlplr["lambda_min"].min()) if len(mlplr) else MISSING, "smallest MLPLR step at eval")
    add("LambdaMlplrMax", num(mlplr["lambda_max"].max()) if len(mlplr) else MISSING, "largest MLPLR step at eval")
    add("LambdaMlplrMean", num(mlplr["lambda_mean"].mean()) if len(mlplr) else MISSING, "mean MLPLR step at eval")

    # MLPLR vs fixed on matched cells (same setting and algorithm)
    lookup = {(c.dataset, c.ways, c.shots, c.algorithm, c.rule): c.mean for c in cells.itertuples()}
    gains = [
        lookup[k[:4] + ("mlplr",)] - v
        for k, v in sorted(lookup.items())
        if k[4] == "fixed" and k[:4] + ("mlplr",) in lookup
    ]
    add("NumPairs", str(len(gains)), "cells with both fixed and MLPLR")
    add("NumPairsImproved", str(sum(g > 0 for g in gains)), "of which MLPLR is better")
    add("MeanGainMlplr", pct(sum(gains) / len(gains)) if gains else MISSING,
        "mean MLPLR - fixed accuracy (percentage points)")

    single = len({(d, w) for d, w, _ in cols}) == 1
    for c in cells.itertuples():
        long = (c.dataset, c.ways, "Way", c.shots, "Shot", c.algorithm, c.rule)
        add("Acc" + macro_name(*long), pct(c.mean), f"{setting_label(c.dataset, c.ways, c.shots)} {c.algorithm} {c.rule}")
        add("Ci" + macro_name(*long), pct(c.ci95))
        if single:
            add("Acc" + macro_name(c.algorithm, c.rule, c.shots, "Shot"), pct(c.mean))
            add("Ci" + macro_name(c.algorithm, c.rule, c.shots, "Shot"), pct(c.ci95))
    for col in cols:
        sub = cells[(cells["dataset"] == col[0]) & (cells["ways"] == col[1]) & (cells["shots"] == col[2])]
        b = max(sub.itertuples(), key=lambda c: (Decimal(pct(c.mean)), -agg.algorithm_rank(c.algorithm)[0]))
        names = [macro_name(col[0], col[1], "Way", col[2], "Shot")]
        if single:
            names.append(macro_name(col[2], "Shot"))
        for suffix in names:
            add("BestAcc" + suffix, pct(b.mean))
            add("BestMethod" + suffix, latex_escape(agg.method_label(b.algorithm, b.rule)))

    seen: dict[str, int] = {}
    for m in out:
        seen[m["name"]] = seen.get(m["name"], 0) + 1
    clashes = sorted(n for n, k in seen.items() if k > 1)
    if clashes:
        raise ValueError(f"TeX macro names clash (rename a dataset/algorithm/rule): {clashes}")
    return out


def render_macros(runs: pd.DataFrame, experiment: str, train: list[dict] | None = None,
                  templates_dir: Path | None = None) -> str:
    return make_env(templates_dir).get_template("macros.tex.j2").render(
        experiment=experiment, macros=macros_model(runs, experiment, train)
    )
