"""The appendix's analyses: gradient-fidelity and step-size figures, the cost table, their macros.

Inputs are the analysis results (results/<experiment>/analysis/*.json) and the training runs'
``rates.json``; outputs go to paper/generated/<experiment>/ (``ANALYSIS_OUTPUTS``). Every output is
written whatever the grid holds (a placeholder when there is nothing to show), because the workflow
declares them as fixed outputs. Figures follow ``figures.py`` (Agg canvas, fixed rcParams, no dates).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib
import numpy as np

from metalr.io import read_json, write_text
from metalr.models import BACKBONES, widths
from metalr.stages import ANALYSIS_OUTPUTS, ANALYSIS_TEMPLATES  # noqa: F401 (named in the table of stages)

from . import aggregate as agg
from . import latex
from .figures import RC, _new_figure, _save, _step_colours, mpl_text


def _placeholder(pdf_path: Path, message: str) -> list[Path]:
    with matplotlib.rc_context(RC):
        fig = _new_figure(6.0, 1.5)
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
        return [_save(fig, pdf_path, "pdf")]


# --------------------------------------------------------------------------- gradient fidelity

def fidelity_series(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One curve per (algorithm, CG steps, reference), points sorted by inner steps."""
    curves: dict[tuple, dict[str, Any]] = {}
    for row in data["results"]:
        key = (row["algorithm"], row["cg_steps"], row["reference"])
        curve = curves.setdefault(key, {"algorithm": key[0], "cg_steps": key[1], "reference": key[2], "points": []})
        curve["points"].append((row["inner_steps"], row["cosine"], row["relative_error"]))
    for curve in curves.values():
        curve["points"].sort()
    return list(curves.values())


def fidelity_figure(data: dict[str, Any], pdf_path: Path) -> list[Path]:
    """(a) cosine and (b) relative error to the exact meta-gradient vs inner steps. Solid: against MAML;
    dashed: iMAML against its own unrolled proximal loop (the largest CG setting only)."""
    curves = fidelity_series(data)
    cg_settings = sorted({c["cg_steps"] for c in curves if c["cg_steps"] is not None})
    colours = dict(zip(cg_settings, _step_colours(len(cg_settings))))
    with matplotlib.rc_context(RC):
        fig = _new_figure(7.0, 2.6)
        axes = fig.subplots(1, 2)
        for curve in curves:
            own_reference = curve["reference"] != "maml"
            if own_reference and curve["cg_steps"] != cg_settings[-1]:
                continue
            steps, cos, err = (np.array(v, dtype=np.float64) for v in zip(*curve["points"]))
            if curve["algorithm"] == "fomaml":
                style, label = {"color": "black"}, "FOMAML"
            else:
                style = {"color": colours[curve["cg_steps"]], "linestyle": "--" if own_reference else "-"}
                label = f"iMAML, {curve['cg_steps']} CG" + (" vs own unroll" if own_reference else "")
            axes[0].plot(steps, cos, marker="o", markersize=2.5, label=label, **style)
            axes[1].plot(steps, err, marker="o", markersize=2.5, label=label, **style)
        axes[0].set_ylabel("cosine to exact meta-gradient")
        axes[1].set_ylabel("relative error")
        axes[1].set_yscale("log")
        for ax, title in zip(axes, ("(a) cosine similarity", "(b) relative error")):
            ax.set_xlabel("inner steps")
            ax.set_title(title, loc="left")
        axes[1].legend(loc="best", frameon=False)
        return [_save(fig, pdf_path, "pdf")]


# --------------------------------------------------------------------------- cost table

def cost_model(bench_report: dict[str, Any], experiment: str) -> dict[str, Any]:
    """What cost.tex.j2 needs, from a ``metalr bench`` / ``metalr cost`` JSON."""
    results = bench_report["results"]
    rows = []
    for r in results:
        case, timing = r["case"], r["metalr"]["iteration_s"]
        rows.append({
            "shape": case["shape"], "shots": case["shots"], "algorithm": agg.algorithm_label(case["algorithm"]),
            "rule": agg.rule_label(case["rule"]),
            "time": f"{latex.num(timing['median'])} [{latex.num(timing['min'])}--{latex.num(timing['max'])}]",
            "tasks_per_s": latex.num(r["metalr"]["tasks_per_s"]),
            "memory": f"{r['metalr']['peak_memory_mib']:.0f}",
            "gflop": latex.num(r["metalr"]["flops_per_iteration"] / 1e9),
            "utilisation": latex.num(r["metalr"]["utilisation"], 2),
            "ratio": _ratio(r, "speedup_metalr_vs_reference"),
            "ratio_same_allocator": _ratio(r, "speedup_metalr_vs_reference_same_allocator"),
        })
    first = results[0]["case"] if results else {}
    settings, peak = bench_report["settings"], bench_report["matmul_peak"]
    backbone = first.get("backbone")
    return {"experiment": experiment, "rows": rows, "device": bench_report["device"]["device"],
            "backbone": BACKBONES[backbone].label if backbone else latex.MISSING,
            "widths": "--".join(map(str, widths(backbone, first["filters"]))) if backbone else latex.MISSING,
            "peak_gflop_per_s": latex.num(peak["flop_per_s"] / 1e9), "peak_size": peak["size"],
            "peak_threads": peak["threads"],
            "filters": first.get("filters", 0), "ways": first.get("ways", 0), "queries": first.get("queries", 0),
            "task_batch": first.get("task_batch", 0), "inner_steps": first.get("inner_steps", 0),
            "repeats": settings["repeats"], "warmup": settings["warmup"], "cpu_allocator": settings["cpu_allocator"],
            "memory_kind": results[0]["metalr"]["peak_memory_kind"].replace("_", " ") if results else "--"}


def _ratio(row: dict[str, Any], key: str) -> str:
    return latex.num(row[key], 2) if key in row else latex.MISSING


def render_cost(bench_report: dict[str, Any], experiment: str, templates_dir: Path | None = None) -> str:
    return latex.make_env(templates_dir).get_template(ANALYSIS_TEMPLATES[0]).render(**cost_model(bench_report, experiment))


# --------------------------------------------------------------------------- step-size trajectories

def adaptive_trajectories(rate_logs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs whose rule is not ``fixed`` and whose log holds at least one record."""
    return [log for log in rate_logs if log["run"]["rule"] != "fixed" and log["iterations"]]


def stepsize_figure(rate_logs: Sequence[dict[str, Any]], pdf_path: Path) -> list[Path]:
    """Per adaptive or learned-rule run, one panel per adapted tensor: its rate (mean over the task
    batch) vs training iteration, one line per inner step."""
    runs = adaptive_trajectories(rate_logs)
    if not runs:
        return _placeholder(pdf_path, "No run with an adaptive or learned step-size rule in this grid.")
    ncols = max(len(log["keys"]) for log in runs)
    with matplotlib.rc_context(RC):
        fig = _new_figure(min(1.6 * ncols + 0.5, 14.0), 1.5 * len(runs) + 0.4)
        axes = fig.subplots(len(runs), ncols, squeeze=False)
        for row, log in zip(axes, runs):
            rates = np.asarray(log["rates"], dtype=np.float64)  # [records, keys, steps]
            colours = _step_colours(rates.shape[2])
            r = log["run"]
            for col, ax in enumerate(row):
                if col >= len(log["keys"]):
                    ax.axis("off")
                    continue
                for step in range(rates.shape[2]):
                    ax.plot(log["iterations"], rates[:, col, step], color=colours[step],
                            label=f"step {step + 1}" if col == 0 else None)
                ax.set_title(mpl_text(log["keys"][col]), loc="left")
                ax.tick_params(labelsize=5)
            row[0].set_ylabel(mpl_text(f"{r['dataset']} {r['ways']}w{r['shots']}s\n"
                                       f"{agg.method_label(r['algorithm'], r['rule'])}"), fontsize=6)
            row[0].legend(loc="best", frameon=False, fontsize=5)
        return [_save(fig, pdf_path, "pdf")]


# --------------------------------------------------------------------------- macros and the stage

def analyses_macros(fidelity: dict[str, Any], cost: dict[str, Any], rate_logs: Sequence[dict[str, Any]],
                    cfg: dict[str, Any]) -> str:
    """Every number the analyses section's prose uses, as \\newcommand lines (name: its source)."""
    fcfg = fidelity["settings"]["fidelity"]
    steps = sorted(fcfg["inner_steps"])
    largest_cg = max(fcfg["cg_steps"])

    def at(algorithm: str, inner: int, cg: int | None, reference: str, field: str) -> str:
        row = next(r for r in fidelity["results"] if (r["algorithm"], r["inner_steps"], r["cg_steps"], r["reference"])
                   == (algorithm, inner, cg, reference))
        return latex.num(row[field])

    adaptation = cfg["train"]["outer_lr_adaptation"]
    mo = cfg["rules"]["metaoptimize"]
    values = {
        "FidelityDataset": latex.latex_escape(fcfg["dataset"]), "FidelitySplit": fcfg["split"],
        "FidelityWays": fcfg["ways"], "FidelityShots": fcfg["shots"], "FidelityQueries": fcfg["queries"],
        "FidelityTaskBatch": fcfg["task_batch"], "FidelitySeed": fcfg["seed"],
        "FidelityInnerLr": latex.num(fidelity["settings"]["inner_lr"]), "FidelityLam": latex.num(fidelity["settings"]["lam"]),
        "FidelityFilters": fidelity["settings"]["filters"],
        "FidelityBackbone": BACKBONES[fidelity["settings"]["backbone"]].label,
        "FidelityStepsMin": steps[0], "FidelityStepsMax": steps[-1], "FidelityCgMax": largest_cg,
        "FidelityFomamlCosFirst": at("fomaml", steps[0], None, "maml", "cosine"),
        "FidelityFomamlCosLast": at("fomaml", steps[-1], None, "maml", "cosine"),
        "FidelityImamlCosFirst": at("imaml", steps[0], largest_cg, "maml", "cosine"),
        "FidelityImamlCosLast": at("imaml", steps[-1], largest_cg, "maml", "cosine"),
        "FidelityImamlOwnErrLast": at("imaml", steps[-1], largest_cg, "imaml_unrolled", "relative_error"),
        "FidelityMamlCheck": latex.num(max(c["relative_error"] for c in fidelity["maml_vs_independent_unroll"]), 2),
        "CostCases": len(cost["results"]),
        "CostReferenceCases": sum("speedup_metalr_vs_reference" in r for r in cost["results"]),
        "StepsizeRuns": len(adaptive_trajectories(rate_logs)),
        "InnerMetaOptimizeMetaLr": latex.num(mo["meta_lr"]), "InnerMetaOptimizeDecay": latex.num(mo["trace_decay"]),
        "InnerMetaOptimizeVariant": mo["variant"],
        "OuterAdaptation": adaptation["method"], "OuterMetaLr": latex.num(adaptation["meta_lr"]),
        "OuterTraceDecay": latex.num(adaptation["trace_decay"]), "OuterVariant": adaptation["variant"],
    }
    lines = ["% Generated by metalr.report.analyses -- do not edit. Sources: results/<experiment>/analysis/"
             "{fidelity,cost}.json, the runs' rates.json, and the config keys analysis.*, rules.metaoptimize.*,"
             " train.outer_lr_adaptation.*"]
    lines += [f"\\newcommand{{\\{name}}}{{{value}}}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def build_analyses(cfg: dict[str, Any], fidelity_path: Path, cost_path: Path, rates_paths: Sequence[Path],
                   out_dir: Path, templates_dir: Path | None = None) -> list[Path]:
    """Write ``ANALYSIS_OUTPUTS`` into ``out_dir`` (each atomically); render the TeX before writing anything."""
    fidelity, cost = read_json(fidelity_path), read_json(cost_path)
    rate_logs = [read_json(p) for p in rates_paths]
    for data, path in ((fidelity, fidelity_path), *zip(rate_logs, rates_paths)):
        experiment = data.get("experiment", data.get("run", {}).get("experiment"))
        if experiment != cfg["experiment"]:
            raise ValueError(f"{path} belongs to experiment {experiment!r}, not {cfg['experiment']!r}")
    table = render_cost(cost, cfg["experiment"], templates_dir)
    macros = analyses_macros(fidelity, cost, rate_logs, cfg)
    out_dir = Path(out_dir)
    written = fidelity_figure(fidelity, out_dir / "fidelity.pdf") + stepsize_figure(rate_logs, out_dir / "stepsizes.pdf")
    for name, text in (("cost.tex", table), ("analyses_macros.tex", macros)):
        write_text(out_dir / name, text)
        written.append(out_dir / name)
    return written
