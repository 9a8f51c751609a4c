"""The report stage: metrics + training logs -> summary.csv, table1.tex, macros.tex, lambda.pdf/.png, training.pdf."""
from __future__ import annotations

from pathlib import Path

from metalr.io import write_text

from . import figures, latex
from .aggregate import collect

OUTPUTS = ("summary.csv", "table1.tex", "macros.tex", "lambda.pdf", "lambda.png", "training.pdf")


def _check_experiment(runs: list[dict], experiment: str, what: str) -> None:
    other = sorted({str(r.get("experiment")) for r in runs} - {experiment})
    if other:
        raise ValueError(f"{what} from other experiment(s) {other} given to the report of {experiment!r}")


def build_report(metrics_paths: list[Path], train_log_dirs: list[Path], out_dir: Path, experiment: str,
                 templates_dir: Path | None = None) -> list[Path]:
    """Write the generated files of the appendix into ``out_dir`` (atomically, each) and return their paths.

    Raises ValueError when there are no metrics, when an input belongs to another experiment, when
    runs of one column were evaluated on different task lists, or when a run is given twice.
    """
    if not metrics_paths:
        raise ValueError("build_report: no metrics files given")
    out_dir = Path(out_dir)
    runs = collect([Path(p) for p in metrics_paths])
    _check_experiment(runs.to_dict("records"), experiment, "metrics")
    logs = figures.load_train_logs([Path(d) for d in train_log_dirs])
    _check_experiment([t.run for t in logs], experiment, "training logs")
    train_meta = [{"inner_steps": t.inner_steps, "task_batch": t.task_batch} for t in logs]

    # render everything before writing anything, so a template error leaves no partial report
    table = latex.render_table1(runs, experiment, templates_dir)
    macros = latex.render_macros(runs, experiment, train_meta, templates_dir)
    csv = runs.to_csv(index=False, lineterminator="\n")

    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("summary.csv", csv), ("table1.tex", table), ("macros.tex", macros)):
        write_text(out_dir / name, text)
        written.append(out_dir / name)
    written += figures.lambda_figure(logs, out_dir / "lambda.pdf", out_dir / "lambda.png")
    written += figures.training_figure(logs, out_dir / "training.pdf")
    return written
