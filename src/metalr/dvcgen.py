"""Generate dvc.yaml from a config: the same stages, paths and CLI calls as the Snakemake workflow.

Generated rather than hand-written so the grid has one home (the config) and the parameters each
stage reads are listed exactly, per config file (DVC refuses a listed key that a file lacks).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from metalr import config as config_mod
from metalr import paths
from metalr.data.splits import split_files
from metalr.report.analyses import ANALYSIS_OUTPUTS, ANALYSIS_TEMPLATES
from metalr.report.scaling import SCALING_OUTPUTS
from metalr.report.build import OUTPUTS as REPORT_FILES
from metalr.stages import stage_sources


def _params(config_files: Iterable[str], keys: Iterable[str]) -> list[dict]:
    """For each config file, the dotted keys (of ``keys``) it actually sets."""
    entries = []
    for path in config_files:
        data = config_mod.read_yaml(path)
        present = [k for k in keys if config_mod.has_key(data, k.split("."))]
        if present:
            entries.append({path: present})
    return entries


def _stage(cmd: str, deps: list[str], params: list[dict], outs: list[Any], **extra: Any) -> dict:
    stage = {"cmd": cmd, "deps": deps}
    if params:
        stage["params"] = params
    stage.update({"outs": outs} if outs else {})
    stage.update(extra)
    return stage


def evaluation_stage(run: config_mod.Run, test_dataset: str) -> str:
    slug = run.run_id.replace("/", "_")
    return f"evaluate_{slug}" if test_dataset == run.dataset else f"evaluate_{slug}_on_{test_dataset}"


def _evaluate_stage(cfg: Mapping[str, Any], config_files: list[str], args: str, run: config_mod.Run,
                    test: str, data_dir: str) -> dict:
    model_dir = str(paths.model_dir(cfg, run))
    tasks = str(paths.tasks_file(cfg, test, run.ways, run.shots) if test == run.dataset
                else paths.cross_domain_tasks_file(cfg, run.dataset, test, run.ways, run.shots))
    if test == run.dataset:
        metrics, flag = str(paths.metrics_file(cfg, run)), ""
    else:
        metrics, flag = str(paths.cross_domain_metrics_file(cfg, run, test)), f" --test-dataset {test}"
    keys = ["model", f"algorithms.{run.algorithm}", f"rules.{run.rule}", "train", "deterministic", "compute.tf32",
            "compute.autocast", "evaluate", "experiment"]
    return _stage(
        f"metalr evaluate {args} --run {run.run_id}{flag} --model {model_dir}/model.pt --tasks {tasks} --out {metrics}",
        [model_dir, tasks, data_dir] + stage_sources("evaluate"), _params(config_files, keys), [],
        metrics=[{metrics: {"cache": True}}])


def generate(config_files: list[str]) -> dict:
    cfg = config_mod.load(config_files)
    args = " ".join(f"--configfile {f}" for f in config_files)
    stages: dict[str, dict] = {}
    data_dirs = {}
    for dataset in config_mod.grid_datasets(cfg):
        data_dirs[dataset] = str(Path(cfg["data"]["root"]) / dataset)
        stages[f"data_{dataset}"] = _stage(
            f"metalr data {args} --dataset {dataset}", stage_sources("data") + split_files(dataset),
            _params(config_files, [f"data.{dataset}", "data.root"]), [data_dirs[dataset]])
    runs = config_mod.grid_runs(cfg)
    cross = config_mod.cross_domain_evaluations(cfg)
    task_keys = ["evaluate.tasks", "evaluate.queries", "evaluate.split", "evaluate.task_seed", "experiment"]
    for dataset, ways, shots in sorted({(r.dataset, r.ways, r.shots) for r in runs}):
        out = str(paths.tasks_file(cfg, dataset, ways, shots))
        stages[f"tasks_{dataset}_{ways}w{shots}s"] = _stage(
            f"metalr tasks {args} --dataset {dataset} --ways {ways} --shots {shots} --out {out}",
            [data_dirs[dataset]] + stage_sources("tasks"), _params(config_files, task_keys), [out])
    for train, test, ways, shots in sorted({(r.dataset, test, r.ways, r.shots) for r, test in cross}):
        out = str(paths.cross_domain_tasks_file(cfg, train, test, ways, shots))
        stages[f"tasks_{test}_{ways}w{shots}s_unseen_by_{train}"] = _stage(
            f"metalr tasks {args} --dataset {test} --ways {ways} --shots {shots} --unseen-by {train} --out {out}",
            [data_dirs[test], data_dirs[train]] + stage_sources("tasks"),
            _params(config_files, task_keys), [out])
    for run in runs:
        slug = run.run_id.replace("/", "_")
        model_dir = str(paths.model_dir(cfg, run))
        rule_key = f"rules.{run.rule}"
        algorithm_key = f"algorithms.{run.algorithm}"  # listed only where a config file sets it (iMAML)
        stages[f"train_{slug}"] = _stage(
            f"metalr train {args} --run {run.run_id} --out-dir {model_dir}",
            [data_dirs[run.dataset]] + stage_sources("train"),
            _params(config_files, ["model", algorithm_key, rule_key, "train", "deterministic", "compute.tf32",
                                   "compute.autocast", "experiment"]), [model_dir])
    for run, test in [(r, r.dataset) for r in runs] + cross:
        stages[evaluation_stage(run, test)] = _evaluate_stage(cfg, config_files, args, run, test, data_dirs[test])
    analysis_dir = paths.analysis_dir(cfg)
    fidelity = cfg["analysis"]["fidelity"]
    stages["fidelity"] = _stage(
        f"metalr fidelity {args} --out {analysis_dir}/fidelity.json",
        [str(Path(cfg["data"]["root"]) / fidelity["dataset"])] + stage_sources("fidelity"),
        _params(config_files, ["analysis.fidelity", "rules.fixed", "algorithms.imaml", "model", "experiment"]),
        [f"{analysis_dir}/fidelity.json"])
    stages["cost"] = _stage(
        f"metalr cost {args} --out {analysis_dir}/cost.json", stage_sources("cost"),
        _params(config_files, ["analysis.cost", "train.inner_steps", "compute.device", "experiment"]),
        [f"{analysis_dir}/cost.json"])
    scaling = str(paths.scaling_file(cfg))
    stages["scaling"] = _stage(
        f"metalr scaling {args} --out {scaling}", stage_sources("scaling"),
        _params(config_files, ["analysis.scaling", "compute", "experiment"]), [scaling])
    report_dir = str(paths.report_dir(cfg))
    stages["scaling_figure"] = _stage(
        f"metalr scaling-figure {args} --scaling-json {scaling} --out-dir {report_dir}",
        [scaling] + stage_sources("scaling_figure"), [], [f"{report_dir}/{name}" for name in SCALING_OUTPUTS])
    stages["analyses"] = _stage(
        f"metalr analyses {args} --out-dir {report_dir}",
        [f"{analysis_dir}/fidelity.json", f"{analysis_dir}/cost.json"]
        + sorted(str(paths.model_dir(cfg, r)) for r in runs) + [f"paper/templates/{n}" for n in ANALYSIS_TEMPLATES]
        + stage_sources("report"),
        _params(config_files, ["rules.metaoptimize", "train.outer_lr_adaptation", "experiment"]),
        [f"{report_dir}/{name}" for name in ANALYSIS_OUTPUTS])
    metrics_files = [str(p) for p in paths.all_metrics_files(cfg)]
    logs = [str(paths.model_dir(cfg, r)) for r in runs]
    templates = sorted(str(p.relative_to(config_mod.REPO_ROOT))
                       for p in (config_mod.REPO_ROOT / "paper" / "templates").glob("*.tex.j2")
                       if p.name not in ANALYSIS_TEMPLATES)
    stages["report"] = _stage(
        f"metalr report {args} --out-dir {report_dir}",
        sorted(set(metrics_files + logs)) + templates + list(config_files) + [cfg["report"]["paper_results"]]
        + stage_sources("report"),
        _params(config_files, ["experiment"]),
        [f"{report_dir}/{name}" for name in REPORT_FILES if name != "summary.csv"],
        plots=[{f"{report_dir}/summary.csv": {"cache": True, "x": "shots", "y": "accuracy_mean"}}])
    pdf = f"{report_dir}/appendix.pdf"
    sections = sorted(str(p.relative_to(config_mod.REPO_ROOT))
                      for p in (config_mod.REPO_ROOT / "paper" / "sections").glob("*.tex"))
    stages["appendix_pdf"] = _stage(
        f"metalr pdf {args} --appendix paper/appendix.tex --gendir {report_dir} --out {pdf}",
        ["paper/appendix.tex"] + sections
        + [f"{report_dir}/{n}" for n in REPORT_FILES + ANALYSIS_OUTPUTS + SCALING_OUTPUTS] + stage_sources("pdf"),
        [], [pdf])
    return {"stages": stages}


HEADER = ("# Generated by `metalr dvc-yaml {args}`; do not edit by hand (tests check it is current).\n"
          "# The same stages, paths and CLI calls as the Snakemake workflow.\n")


def render(config_files: list[str]) -> str:
    body = yaml.safe_dump(generate(config_files), sort_keys=False, width=120)
    return HEADER.format(args=" ".join(f"--configfile {f}" for f in config_files)) + body

