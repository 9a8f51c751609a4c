"""The report stage: metrics + training logs + config -> the generated files of the appendix (OUTPUTS).

The files are replaced as one unit: everything is rendered into a temporary sibling folder first, then
moved into place, and the manifest (``report.json``: each file's sha256) is written last; until it is,
the folder holds none, so the PDF stage (``check_report``) refuses a report a killed run left half-replaced.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from metalr import config as config_mod
from metalr import io, stages
from metalr import tune as tune_mod

from . import aggregate as agg
from . import choices as choices_mod
from . import curves, figures, latex
from . import paired as paired_mod
from . import paper as paper_mod
from . import tables as tables_mod
from . import method_stats
from .latex import latex_escape
from .macros import macros_model

# Fixed names, from the table of stages (Snakemake and dvc.yaml declare them); a file with nothing to show says so.
TEXT_OUTPUTS = stages.REPORT_TEXT_OUTPUTS + stages.REPORT_DVC_OUTPUTS
FIGURE_OUTPUTS = stages.REPORT_FIGURE_OUTPUTS
REPORT_MANIFEST = stages.REPORT_MANIFEST
OUTPUTS = stages.REPORT_OUTPUTS


class IncompleteReport(RuntimeError):
    """A report folder lacks its manifest, or a file differs from it: a report run was cut short, or edited."""


def check_report(out_dir: Path) -> dict:
    """The report manifest of ``out_dir``, after checking every file it lists against its sha256."""
    path = Path(out_dir) / REPORT_MANIFEST
    rerun = "rerun the report stage (metalr report)"
    if not path.is_file():
        raise IncompleteReport(f"{path} is missing: the report in {out_dir} is incomplete (a report run was cut "
                               f"short while replacing it) or was not made by metalr report; {rerun}")
    manifest = io.read_json(path, rerun)
    for name, sha in manifest["files"].items():
        if not (Path(out_dir) / name).is_file() or io.sha256_file(Path(out_dir) / name) != sha:
            raise IncompleteReport(f"{Path(out_dir) / name} is not the file the report recorded in {path} "
                                   f"(missing or changed after the report was written); {rerun}")
    return manifest


def _publish(staging: Path, out_dir: Path, names: list[str], experiment: str) -> list[Path]:
    """Move the staged files into ``out_dir``, the manifest last (the old one goes first)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT_MANIFEST).unlink(missing_ok=True)
    files = {}
    for name in names:
        files[name] = io.sha256_file(staging / name)
        os.replace(staging / name, out_dir / name)
    io.write_json(out_dir / REPORT_MANIFEST, {"experiment": experiment, "files": files})
    return [out_dir / name for name in names] + [out_dir / REPORT_MANIFEST]


def _check_experiment(runs: list[dict], experiment: str, what: str) -> None:
    other = sorted({str(r.get("experiment")) for r in runs} - {experiment})
    if other:
        raise ValueError(f"{what} from other experiment(s) {other} given to the report of {experiment!r}")


def paper_results_path(cfg: dict) -> Path:
    path = Path(cfg["report"]["paper_results"])
    return path if path.is_absolute() else config_mod.project_root() / path


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


def _cell_tex(r: dict) -> str:
    return latex.setting_label(tables_mod.column_group_tex(r["dataset"], r["test_dataset"]), r["ways"], r["shots"])


def _interval(low: float, high: float, fmt=latex.pct) -> str:
    if not (method_stats.is_defined(low) and method_stats.is_defined(high)):
        return latex.NA
    return f"[{fmt(low)}, {fmt(high)}]"


def _verdict_rows(verdicts, within) -> list[dict]:
    """The verdict table's rows (paired.tex): per cell and rule, the differences per seed and the method-level
    statistics, in percentage points (P(improvement) as a probability)."""
    per_seed = {}
    for r in within.to_dict("records"):
        per_seed.setdefault(tuple(r[k] for k in paired_mod.PAIR_KEY + ("rule",)), []).append(latex.pct(r["mean"]))
    rows = []
    for r in verdicts.to_dict("records"):
        rows.append({"cell": _cell_tex(r), "method": latex_escape(agg.method_label(r["algorithm"], r["rule"])),
                     "seeds": ", ".join(per_seed[tuple(r[k] for k in paired_mod.PAIR_KEY + ("rule",))]),
                     "mean": latex.pct(r["mean"]), "seed_ci": _interval(r["seed_low"], r["seed_high"]),
                     "boot_ci": _interval(r["boot_low"], r["boot_high"]),
                     "poi": latex.or_na(latex.points(r["poi"])),
                     "poi_ci": _interval(r["poi_low"], r["poi_high"], latex.points), "verdict": r["verdict"]})
    return rows


def _within_rows(within) -> list[dict]:
    return [{"cell": _cell_tex(r), "method": latex_escape(agg.method_label(r["algorithm"], r["rule"])),
             "seed": int(r["seed"]), "mean": latex.pct(r["mean"]), "low": latex.pct(r["low"]),
             "high": latex.pct(r["high"]), "p": latex.p_value(r["p_value"])}
            for r in within.to_dict("records")]


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
    """Write OUTPUTS into ``out_dir`` (as one unit: see the module docstring) and return their paths.

    ``cfg`` is the experiment's resolved config (report.tables, report.paper_results, report.bootstrap,
    every value for the choices ledger) and ``sources`` the source of each of its values
    (metalr.provenance); ``metrics_paths`` holds in-domain and cross-domain evaluations alike. Raises
    ValueError when there are no metrics, when an input belongs to another experiment or was made with
    other config values (its config digest), when evaluations on one test set used different task lists,
    or when an evaluation is given twice.
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
    bootstrap = cfg["report"]["bootstrap"]
    paired = paired_mod.paired(runs, bootstrap["resamples"], bootstrap["seed"])
    within = paired_mod.within_seed(runs)
    comparison = paper_mod.compare(cells, paper_mod.load_paper_results(paper_results_path(cfg)))
    used = {"datasets": set(runs["dataset"]) | set(runs["test_dataset"]) | set(cfg["grid"]["datasets"]),
            "algorithms": set(runs["algorithm"]), "rules": set(runs["rule"])}
    choices = choices_mod.ledger(cfg, sources, used, tune_mod.tuned_keys(cfg))
    in_domain = tables_mod.in_domain_tables(runs, cfg["report"]["tables"])
    cross = tables_mod.cross_domain(runs)
    cross_tables = [(dict(tables_mod.CROSS), cross)] if not cross.empty else []
    labels = [tables_mod.label(spec["name"]) for spec, _ in in_domain + cross_tables]

    def render(template: str, **context) -> str:
        return latex.render(template, templates_dir, experiment=experiment, **context)

    texts = {
        "summary.csv": agg.summary_csv(runs),
        "cells.csv": agg.cells_csv(cells),
        "paired.csv": paired_mod.paired_csv(paired),
        "paired_within_seed.csv": paired_mod.paired_csv(within),
        "tables.tex": render("accuracy_tables.tex.j2", **tables_mod.tables_context(
            in_domain, experiment, "No in-domain evaluation in this experiment.")),
        "cross_domain_table.tex": render("accuracy_tables.tex.j2", **tables_mod.tables_context(
            cross_tables, experiment, "No cross-domain evaluation in this experiment.")),
        "paper_vs_ours.tex": render("paper_vs_ours.tex.j2", rows=_paper_rows(comparison),
                                    n_cells=len(comparison)),
        "paired.tex": render("paired.tex.j2", verdicts=_verdict_rows(paired, within), within=_within_rows(within),
                             resamples=bootstrap["resamples"]),
        "choices.tex": render("choices.tex.j2", choices=choices),
        "macros.tex": render("macros.tex.j2", macros=macros_model(runs, experiment, train_meta, labels, paired,
                                                                  within, comparison, choices,
                                                                  bootstrap["resamples"]) + [
            {"name": "TuningSection", "value": r"\input{sections/tuning}" if "tune" in cfg else "",
             "comment": "the tuning section, for an experiment that tunes on meta-validation (metalr.tune)"}]),
        "metrics.json": curves.metrics_summary(runs),
        "training_loss.csv": curves.training_curve(logs, "query_loss", stages.training_curve_columns(cfg)),
        "training_accuracy.csv": curves.training_curve(logs, "query_accuracy", stages.training_curve_columns(cfg)),
        "stepsizes.csv": curves.stepsizes(runs, stages.stepsize_columns(cfg)),
    }
    io.remove_stale_folders(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for name in TEXT_OUTPUTS:
            io.write_text(staging / name, texts[name])
        staged = [*figures.ways_figure(cells, staging / "ways.pdf"),
                  *figures.cross_domain_figure(cells, staging / "cross_domain.pdf"),
                  *figures.lambda_figure(logs, staging / "lambda.pdf", staging / "lambda.png"),
                  *figures.training_figure(logs, staging / "training.pdf")]
        return _publish(staging, out_dir, [*TEXT_OUTPUTS, *(p.name for p in staged)], experiment)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
