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

from . import aggregate as agg
from . import latex
from .figures import RC, _new_figure, _save, _step_colours, mpl_text

ANALYSIS_OUTPUTS = ("fidelity.pdf", "stepsizes.pdf", "cost.tex", "analyses_macros.tex")


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
