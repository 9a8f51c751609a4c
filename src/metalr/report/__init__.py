"""Report stage: metrics and training logs -> summary table, LaTeX table/macros, figures, appendix PDF.

Public API (what the CLI calls):

* :func:`metalr.report.aggregate.collect` -- metrics JSON files -> one-row-per-run DataFrame.
* :func:`metalr.report.build.build_report` -- writes the fixed set of files ``build.OUTPUTS`` (summary and
  paired CSVs, accuracy / paper-vs-ours / paired / choices tables, macros.tex, figures) into a folder.
* :func:`metalr.report.pdf.compile_appendix` / :func:`metalr.report.pdf.latex_available`.

Submodules are imported lazily so that ``import metalr.report`` stays cheap (no pandas/matplotlib).
"""
from __future__ import annotations

__all__ = ["collect", "build_report", "compile_appendix", "latex_available", "LatexNotInstalled"]


def __getattr__(name: str):
    if name == "collect":
        from .aggregate import collect

        return collect
    if name == "build_report":
        from .build import build_report

        return build_report
    if name in {"compile_appendix", "latex_available", "LatexNotInstalled"}:
        from . import pdf

        return getattr(pdf, name)
    raise AttributeError(name)
