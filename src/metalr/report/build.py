"""The report stage: metrics + training logs + config -> the generated files of the appendix (OUTPUTS)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from metalr import config as config_mod
from metalr import stages
from metalr.io import write_text

from . import aggregate as agg
from . import choices as choices_mod
from . import curves, figures, latex
from . import paired as paired_mod
from . import paper as paper_mod
from . import tables as tables_mod
from .macros import macros_model

# Fixed names, from the table of stages (Snakemake and dvc.yaml declare them); a file with nothing to show says so.
TEXT_OUTPUTS = stages.REPORT_TEXT_OUTPUTS + stages.REPORT_DVC_OUTPUTS
OUTPUTS = stages.REPORT_OUTPUTS


def _check_experiment(runs: list[dict], experiment: str, what: str) -> None:
    other = sorted({str(r.get("experiment")) for r in runs} - {experiment})
    if other:
        raise ValueError(f"{what} from other experiment(s) {other} given to the report of {experiment!r}")


def paper_results_path(cfg: dict) -> Path:
    path = Path(cfg["report"]["paper_results"])
    return path if path.is_absolute() else config_mod.REPO_ROOT / path


def _paper_rows(comparison) -> list[dict]:
    rows = []
    for r in comparison[comparison["overlap"].notna()].to_dict("records"):
        rows.append({"table": int(r["table"]), "datasets": tables_mod.column_group_tex(r["dataset"], r["test_dataset"]),
                     "ways": int(r["ways"]), "shots": int(r["shots"]),
                     "method": agg.method_label(r["algorithm"], r["rule"]),
                     "paper": f"{latex.points(r['paper_mean'])} $\\pm$ {latex.points(r['paper_ci95'])}",
                     "ours": f"{latex.points(r['ours_mean'])} $\\pm$ {latex.points(r['ours_ci95'])}",
                     "difference": latex.points(r["difference"]), "overlap": "yes" if r["overlap"] else "no"})
    return rows


def _paired_rows(paired) -> list[dict]:
    return [{"datasets": tables_mod.column_group_tex(r["dataset"], r["test_dataset"]), "ways": int(r["ways"]),
             "shots": int(r["shots"]), "algorithm": agg.algorithm_label(r["algorithm"]),
             "rule": agg.rule_label(r["rule"]), "mean": latex.pct(r["mean"]), "low": latex.pct(r["low"]),
             "high": latex.pct(r["high"]), "p": latex.p_value(r["p_value"])}
            for r in paired.to_dict("records")]


def check_config_digests(runs, cfg: Mapping[str, Any]) -> None:
    """Refuse evaluations made with other values than ``cfg``'s: each metrics file's config digest must be
    the one its evaluation job has under ``cfg`` (metalr.stages)."""
    stale = []
    for r in runs.itertuples():
        run = config_mod.Run(r.dataset, int(r.ways), int(r.shots), r.algorithm, r.rule, int(r.seed))
        stage, job = stages.evaluation_job(run, r.test_dataset)
        expected = stages.settings_digest(stage, cfg, job)
        if r.config_digest != expected:
            stale.append(f"{r.metrics_path} (config digest {r.config_digest or 'none'}, the config's {expected})")
    if stale:
        raise ValueError("metrics made with other config values than the current config's; rerun their "
                         "evaluations (snakemake or dvc repro does):\n  " + "\n  ".join(stale))


def build_report(cfg: Mapping[str, Any], sources: Mapping[str, Any], metrics_paths: list[Path],
                 train_log_dirs: list[Path], out_dir: Path, templates_dir: Path | None = None) -> list[Path]:
    """Write OUTPUTS into ``out_dir`` (atomically, each) and return their paths.

    ``cfg`` is the experiment's resolved config (report.tables, report.paper_results, every value for the
    choices ledger) and ``sources`` the source of each of its values (metalr.provenance); ``metrics_paths``
    holds in-domain and cross-domain evaluations alike. Raises ValueError when there are no metrics, when
    an input belongs to another experiment or was made with other config values (its config digest),
    when evaluations on one test set used different task lists, or when an evaluation is given twice.
    """
    if not metrics_paths:
        raise ValueError("build_report: no metrics files given")
    experiment = cfg["experiment"]
    out_dir = Path(out_dir)
    runs = agg.collect([Path(p) for p in metrics_paths])
    _check_experiment(runs.to_dict("records"), experiment, "metrics")
    check_config_digests(runs, cfg)
    logs = figures.load_train_logs([Path(d) for d in train_log_dirs])
    _check_experiment([t.run for t in logs], experiment, "training logs")
    train_meta = [{"inner_steps": t.inner_steps, "task_batch": t.task_batch} for t in logs]

    # compute and render everything before writing anything: an error leaves no partial report
    agg.check_same_tasks(runs)
    cells = agg.cells(runs)
    paired = paired_mod.paired(runs)
    comparison = paper_mod.compare(cells, paper_mod.load_paper_results(paper_results_path(cfg)))
    used = {"datasets": set(runs["dataset"]) | set(runs["test_dataset"]) | set(cfg["grid"]["datasets"]),
            "algorithms": set(runs["algorithm"]), "rules": set(runs["rule"])}
    choices = choices_mod.ledger(cfg, sources, used)
    in_domain = tables_mod.in_domain_tables(runs, cfg["report"]["tables"])
    cross = tables_mod.cross_domain(runs)
    cross_tables = [(dict(tables_mod.CROSS), cross)] if not cross.empty else []
    labels = [tables_mod.label(spec["name"]) for spec, _ in in_domain + cross_tables]

    def render(template: str, **context) -> str:
        return latex.render(template, templates_dir, experiment=experiment, **context)

    texts = {
        "summary.csv": agg.summary_csv(runs),
        "paired.csv": paired_mod.paired_csv(paired),
        "tables.tex": render("accuracy_tables.tex.j2", **tables_mod.tables_context(
            in_domain, experiment, "No in-domain evaluation in this experiment.")),
        "cross_domain_table.tex": render("accuracy_tables.tex.j2", **tables_mod.tables_context(
            cross_tables, experiment, "No cross-domain evaluation in this experiment.")),
        "paper_vs_ours.tex": render("paper_vs_ours.tex.j2", rows=_paper_rows(comparison),
                                    n_cells=len(comparison)),
        "paired.tex": render("paired.tex.j2", rows=_paired_rows(paired)),
        "choices.tex": render("choices.tex.j2", choices=choices),
        "macros.tex": render("macros.tex.j2", macros=macros_model(runs, experiment, train_meta, labels, paired,
                                                                  comparison, choices)),
        "metrics.json": curves.metrics_summary(runs),
        "training_loss.csv": curves.training_curve(logs, "query_loss", stages.training_curve_columns(cfg)),
        "training_accuracy.csv": curves.training_curve(logs, "query_accuracy", stages.training_curve_columns(cfg)),
        "stepsizes.csv": curves.stepsizes(runs, stages.stepsize_columns(cfg)),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in TEXT_OUTPUTS:
        write_text(out_dir / name, texts[name])
        written.append(out_dir / name)
    written += figures.ways_figure(cells, out_dir / "ways.pdf")
    written += figures.cross_domain_figure(cells, out_dir / "cross_domain.pdf")
    written += figures.lambda_figure(logs, out_dir / "lambda.pdf", out_dir / "lambda.png")
    written += figures.training_figure(logs, out_dir / "training.pdf")
    return written
