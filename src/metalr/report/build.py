"""The report stage: metrics + training logs + config -> the generated files of the appendix (OUTPUTS)."""
from __future__ import annotations

from pathlib import Path

from metalr import config as config_mod
from metalr.io import write_text

from . import aggregate as agg
from . import choices as choices_mod
from . import figures, latex
from . import paired as paired_mod
from . import paper as paper_mod
from . import tables as tables_mod
from . import method_stats
from .latex import latex_escape
from .macros import macros_model

# Fixed names: Snakemake and dvc.yaml declare them; a file with nothing to show says so.
TEXT_OUTPUTS = ("summary.csv", "cells.csv", "paired.csv", "paired_within_seed.csv", "tables.tex",
                "cross_domain_table.tex", "paper_vs_ours.tex", "paired.tex", "choices.tex", "macros.tex")
FIGURE_OUTPUTS = ("ways.pdf", "cross_domain.pdf", "lambda.pdf", "lambda.png", "training.pdf")
OUTPUTS = TEXT_OUTPUTS + FIGURE_OUTPUTS


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


def build_report(metrics_paths: list[Path], train_log_dirs: list[Path], out_dir: Path, experiment: str,
                 config_files: list[Path] | None = None, templates_dir: Path | None = None) -> list[Path]:
    """Write OUTPUTS into ``out_dir`` (atomically, each) and return their paths.

    ``metrics_paths`` holds in-domain and cross-domain evaluations alike; ``config_files`` are the
    layered config files of the experiment (default: config/config.yaml alone), read for
    report.tables, report.paper_results, report.bootstrap and the choices ledger. Raises ValueError when there are no
    metrics, when an input or the config belongs to another experiment, when evaluations on one test
    set used different task lists, or when an evaluation is given twice.
    """
    if not metrics_paths:
        raise ValueError("build_report: no metrics files given")
    config_files = [Path(f) for f in (config_files or [config_mod.DEFAULT_CONFIG])]
    cfg = config_mod.load(config_files)
    if cfg["experiment"] != experiment:
        raise ValueError(f"config files {[str(f) for f in config_files]} are of experiment {cfg['experiment']!r}, "
                         f"not {experiment!r}")
    out_dir = Path(out_dir)
    runs = agg.collect([Path(p) for p in metrics_paths])
    _check_experiment(runs.to_dict("records"), experiment, "metrics")
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
    choices = choices_mod.ledger(config_files, used)
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
                                                                  bootstrap["resamples"])),
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
