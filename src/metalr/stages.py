"""The pipeline's stages in one table: per stage, its jobs, files, config keys, code and command line.

Everything that plans or checks the workflow is derived from ``STAGES``: the Snakemake rules
(workflow/rules/*.smk), dvc.yaml (``metalr dvc-yaml``, metalr.dvcgen), the CLI's default paths, the
settings that training and evaluation store in their outputs, and the report's check of them. This
module imports neither torch nor pandas, so planning a grid of any size imports neither.

A job is a dict of wildcard values, as strings (what Snakemake gives a rule). Per stage:

* ``jobs(cfg)``: every job of a config;
* ``outputs(cfg, job)`` / ``inputs(cfg, job)``: named paths, filled from the path patterns below with
  the config's layout (``{experiment}``, ``{root}`` = ``data.root``) and the job; filled with the
  wildcard names themselves (``pattern_job``) the outputs are Snakemake's patterns. Inputs are the
  files other stages make and the committed files a job reads (templates, class splits), never the
  resolved config (every job reads that) nor the package code (``code``);
* ``reads(cfg, job)``: the dotted config keys whose resolved values make the job's identity. Their
  values and the job (``settings``) are what training stores with a model and evaluation with its
  metrics; their digest (``settings_digest``) is Snakemake's ``params.settings``; the keys are the
  job's DVC ``params:``. A job reruns when, and only when, one of these values changes (or an input
  file, or its code);
* ``also_reads``: keys the job reads that are not part of its identity: ones that choose how it runs,
  not what it makes (the device, the CPU allocator, where raw archives come from and how to retry),
  and ones it reads only to check that its job belongs to the config (``grid``, ``cross_domain``)
  or to find its input files (``data.root``), whose content is tracked as inputs;
* ``code``: the package parts it runs besides ``SHARED`` (a content digest in Snakemake, folder
  dependencies in DVC);
* ``argv(cfg, job)``: its command line after ``metalr <command> --config <resolved config>``.

Jobs read the config by content: the resolved (merged, validated) config of an experiment, written
once per experiment to ``results/<experiment>/config.yaml`` with each value's source beside it
(``write_resolved``), never the user's config files. Renaming or moving a config file therefore
changes no job.
"""
from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from metalr import io
from metalr.config import (ConfigError, Run, base_rule, cross_domain_cells, cross_domain_evaluations, grid_runs,
                           is_untuned, needs_validation, tuned_cells)

Cfg = Mapping[str, Any]
Job = dict[str, str]

# ---------------------------------------------------------------------------------------------- layout
RUN = "{dataset}/{ways}w{shots}s/{algorithm}/{rule}/seed{seed}"  # a run's id, and its place under models/
RUN_WILDCARDS = ("dataset", "ways", "shots", "algorithm", "rule", "seed")
CELL = "{dataset}/{ways}w{shots}s"
RESULTS = "results/{experiment}"
GENERATED = "paper/generated/{experiment}"
ANALYSIS = RESULTS + "/analysis"
RESOLVED_CONFIG = RESULTS + "/config.yaml"
CONFIG_SOURCES = RESULTS + "/config-sources.yaml"
DATASET_DIR = "{root}/{dataset}"
TASKS = RESULTS + "/tasks/" + CELL + ".json"
VAL_TASKS = RESULTS + "/tasks/val/" + CELL + ".json"  # meta-validation tasks (evaluate.val_tasks)
TUNED = CELL + "/{algorithm}/{rule}"  # a tuned (cell, algorithm, rule): its folder under tuning/
TUNING = RESULTS + "/tuning/" + TUNED
TRIAL = TUNING + "/trial{trial}.json"
TRIAL_COST = TUNING + "/trial{trial}-cost.json"  # the trial's device seconds, apart: its bytes vary by machine
CHOSEN = TUNING + "/chosen.json"
TRIAL_CHECKPOINT = "work/{experiment}/checkpoints/tuning/" + TUNED + "/trial{trial}.pt"
# a cross-domain evaluation's test tasks: the test dataset's classes less the training dataset's meta-train ones
CROSS_DOMAIN_TASKS = RESULTS + "/tasks/{test}/{ways}w{shots}s-unseen-by-{dataset}.json"
MODEL_DIR = RESULTS + "/models/" + RUN
METRICS = RESULTS + "/metrics/" + RUN + ".json"
CROSS_DOMAIN_METRICS = RESULTS + "/cross_domain/{test}/" + RUN + ".json"
CHECKPOINT = "work/{experiment}/checkpoints/" + RUN + ".pt"
GPU_LOCKS = "work/gpu-locks"
LOGS = "logs/{experiment}"
BENCH = "results/bench/{name}.json"
ROOTS = ("results", "work", "paper/generated", "{root}")  # every path lies below one of these

# A preprocessed dataset folder (metalr.data.arrays): a manifest and two arrays per split.
MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")
MODEL_FILES = ("model.pt", "train_log.json", "lambdas.npy", "rates.json")
# Outputs of the report-side stages (fixed names; each module writes exactly these).
REPORT_TEXT_OUTPUTS = ("summary.csv", "cells.csv", "paired.csv", "paired_within_seed.csv", "tables.tex",
                       "cross_domain_table.tex", "paper_vs_ours.tex", "paired.tex", "choices.tex", "macros.tex")
REPORT_FIGURE_OUTPUTS = ("ways.pdf", "cross_domain.pdf", "lambda.pdf", "lambda.png", "training.pdf")
# For DVC: one flat summary (`metrics:`) and the curves (`plots:`), a column per run.
REPORT_DVC_OUTPUTS = ("metrics.json", "training_loss.csv", "training_accuracy.csv", "stepsizes.csv")
REPORT_MANIFEST = "report.json"  # written last: each file's sha256 (metalr.report.build)
# the order the report writes them
REPORT_OUTPUTS = REPORT_TEXT_OUTPUTS + REPORT_DVC_OUTPUTS + REPORT_FIGURE_OUTPUTS + (REPORT_MANIFEST,)
ANALYSIS_OUTPUTS = ("fidelity.pdf", "stepsizes.pdf", "cost.tex", "analyses_macros.tex")
SCALING_OUTPUTS = ("scaling.pdf", "scaling-macros.tex")
TUNING_OUTPUTS = ("tuning.tex", "sensitivity.pdf", "tuning-macros.tex")  # metalr.report.tuning
TEMPLATES = "paper/templates"
ANALYSIS_TEMPLATES = ("cost.tex.j2",)  # the rest of paper/templates is the report's
APPENDIX = "paper/appendix.tex"
SECTIONS = "paper/sections"
SPLIT_FILES = "config/splits/{dataset}"

# ------------------------------------------------------------------------------------------ code parts
PACKAGE = "src/metalr"
# What every job runs: the command line, the config and its validation (the registries), the table.
SHARED = ("__init__.py", "__main__.py", "cli.py", "config.py", "io.py", "plugins.py", "stages.py",
          "algorithms/__init__.py", "steprules/__init__.py", "models/__init__.py", "data/__init__.py",
          "data/registry.py")
SCHEMA = "config/schema.yaml"


class _Layout(dict):
    """Pattern fields: the job's values, then the config's layout, read only when a pattern names it."""

    def __init__(self, cfg: Cfg, job: Mapping[str, str]):
        super().__init__(job)
        self.cfg = cfg

    def __missing__(self, field: str) -> str:
        if field == "experiment":
            return self.cfg["experiment"]
        if field == "root":
            return self.cfg["data"]["root"]
        raise KeyError(f"path pattern field {{{field}}} is neither a wildcard of the job nor experiment/root")


def fill(pattern: str, cfg: Cfg, job: Mapping[str, str] | None = None) -> str:
    return pattern.format_map(_Layout(cfg, job or {}))


def inside(pattern: str, cfg: Cfg, job: Mapping[str, str] | None = None) -> Path:
    """``fill``, refused (ConfigError) unless the path lies strictly below its root: ``{root}`` (data.root)
    or its first folder (results/, work/, paper/generated/). Config validation restricts the names that go
    into paths (experiment, datasets, algorithms, rules); this is the guard behind it."""
    path = Path(fill(pattern, cfg, job))
    root = Path(fill(next(r for r in ROOTS if pattern.startswith(r + "/")), cfg))
    if root.resolve() not in path.resolve().parents:
        raise ConfigError(f"output path {path} is not inside {root}/: a name in it leaves the folder; use plain "
                          f"names (config key experiment: letters, digits, '_', '-', '.')")
    return path


def run_job(run: Run) -> Job:
    return {"dataset": run.dataset, "ways": str(run.ways), "shots": str(run.shots), "algorithm": run.algorithm,
            "rule": run.rule, "seed": str(run.seed)}


def job_run(job: Mapping[str, str]) -> Run:
    return Run(job["dataset"], int(job["ways"]), int(job["shots"]), job["algorithm"], job["rule"], int(job["seed"]))


def parse_run_id(text: str) -> Job | None:
    """The wildcards of a run id ('glyphs/5w1s/maml/mlplr/seed1'), or None if it does not fit ``RUN``."""
    parts = text.split("/")
    if len(parts) != 5 or not parts[4].startswith("seed") or "w" not in parts[1] or not parts[1].endswith("s"):
        return None
    ways, shots = parts[1][:-1].split("w", 1)
    job = {"dataset": parts[0], "ways": ways, "shots": shots, "algorithm": parts[2], "rule": parts[3],
           "seed": parts[4][len("seed"):]}
    return job if all(job[k].isdigit() for k in ("ways", "shots", "seed")) and all(job.values()) else None


# The layout as functions, for the CLI and the stage code (a Run, not a job).
def resolved_config_file(cfg: Cfg) -> Path:
    return inside(RESOLVED_CONFIG, cfg)


def config_sources_file(cfg: Cfg) -> Path:
    return inside(CONFIG_SOURCES, cfg)


def evaluation_job(run: Run, test_dataset: str) -> tuple[str, Job]:
    """The stage and job that evaluate ``run`` on ``test_dataset`` (its own dataset: in-domain)."""
    if test_dataset == run.dataset:
        return "evaluate", run_job(run)
    return "evaluate_cross_domain", {**run_job(run), "test": test_dataset}


def evaluation_label(run: Run, test_dataset: str) -> str:
    """How the report's per-evaluation columns (and DVC's plots) name an evaluation."""
    return run.run_id if test_dataset == run.dataset else f"{run.run_id} on {test_dataset}"


def training_curve_columns(cfg: Cfg) -> list[str]:
    """Columns of the report's training curves (training_loss.csv, training_accuracy.csv) after ``iteration``."""
    return [run.run_id for run in grid_runs(cfg)]


def stepsize_columns(cfg: Cfg) -> list[str]:
    """Columns of the report's stepsizes.csv after ``step``: every evaluation, in-domain then cross-domain."""
    return ([evaluation_label(run, run.dataset) for run in grid_runs(cfg)]
            + [evaluation_label(run, test) for run, test in cross_domain_evaluations(cfg)])


def dataset_dir(cfg: Cfg, dataset: str) -> Path:
    return inside(DATASET_DIR, cfg, {"dataset": dataset})


def tasks_file(cfg: Cfg, dataset: str, ways: int, shots: int) -> Path:
    return inside(TASKS, cfg, {"dataset": dataset, "ways": str(ways), "shots": str(shots)})


def cross_domain_tasks_file(cfg: Cfg, train_dataset: str, test_dataset: str, ways: int, shots: int) -> Path:
    """The test tasks of ``test_dataset`` drawn from the classes ``train_dataset``'s meta-train split lacks."""
    return inside(CROSS_DOMAIN_TASKS, cfg, {"dataset": train_dataset, "test": test_dataset, "ways": str(ways),
                                            "shots": str(shots)})


def val_tasks_file(cfg: Cfg, dataset: str, ways: int, shots: int) -> Path:
    return inside(VAL_TASKS, cfg, {"dataset": dataset, "ways": str(ways), "shots": str(shots)})


def tuned_job(run: Run) -> Job:
    """The tuning job of ``run``'s (cell, algorithm, rule); its trials add ``trial``."""
    return {"dataset": run.dataset, "ways": str(run.ways), "shots": str(run.shots), "algorithm": run.algorithm,
            "rule": base_rule(run.rule)}


def trial_file(cfg: Cfg, run: Run, trial: int) -> Path:
    return inside(TRIAL, cfg, {**tuned_job(run), "trial": str(trial)})


def trial_checkpoint_file(cfg: Cfg, run: Run, trial: int) -> Path:
    return inside(TRIAL_CHECKPOINT, cfg, {**tuned_job(run), "trial": str(trial)})


def chosen_file(cfg: Cfg, run: Run) -> Path:
    return inside(CHOSEN, cfg, tuned_job(run))


def model_dir(cfg: Cfg, run: Run) -> Path:
    return inside(MODEL_DIR, cfg, run_job(run))


def metrics_file(cfg: Cfg, run: Run) -> Path:
    return inside(METRICS, cfg, run_job(run))


def cross_domain_metrics_file(cfg: Cfg, run: Run, test_dataset: str) -> Path:
    return inside(CROSS_DOMAIN_METRICS, cfg, {**run_job(run), "test": test_dataset})


def checkpoint_file(cfg: Cfg, run: Run) -> Path:
    return inside(CHECKPOINT, cfg, run_job(run))


def analysis_dir(cfg: Cfg) -> Path:
    return inside(ANALYSIS, cfg)


def scaling_file(cfg: Cfg) -> Path:
    return analysis_dir(cfg) / "scaling.json"


def report_dir(cfg: Cfg) -> Path:
    return inside(GENERATED, cfg)


def all_metrics_files(cfg: Cfg) -> list[Path]:
    """Every evaluation the report reads: each grid run in-domain, then the cross-domain ones."""
    return ([metrics_file(cfg, run) for run in grid_runs(cfg)]
            + [cross_domain_metrics_file(cfg, run, test) for run, test in cross_domain_evaluations(cfg)])


def split_array_files(split: str) -> tuple[str, str]:
    return f"{split}_images.npy", f"{split}_labels.npy"


def dataset_files(cfg: Cfg, dataset: str, splits: Iterable[str] = SPLITS) -> list[str]:
    folder = fill(DATASET_DIR, cfg, {"dataset": dataset})
    return [f"{folder}/{MANIFEST}"] + [f"{folder}/{name}" for split in splits for name in split_array_files(split)]


def _committed(root: Path, folder: str, glob: str, exclude: Iterable[str] = ()) -> list[str]:
    """Repository files (relative to ``root``, the workflow's folder) under ``folder`` matching ``glob``."""
    return sorted(p.relative_to(root).as_posix() for p in (root / folder).rglob(glob)
                  if p.is_file() and p.name not in set(exclude))


# ------------------------------------------------------------------------------------------ the stages
@dataclass(frozen=True)
class Stage:
    name: str  # the Snakemake rule; DVC stages are <name>_<job key>
    command: str  # `metalr <command>`
    doc: str  # what it does (DVC's `desc`)
    wildcards: tuple[str, ...]
    key: str  # the job's path-like key (a pattern of the wildcards); names its DVC stage and log
    jobs: Callable[[Cfg], list[Job]]
    outputs: Callable[[Cfg, Job], dict[str, str]]
    inputs: Callable[[Cfg, Job, Path], dict[str, list[str]]]
    reads: Callable[[Cfg, Job], list[str]]
    argv: Callable[[Cfg, Job], list[str]]
    also_reads: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    reads_sources: bool = False  # the report: the source tag of every value (the choices ledger)
    reads_config: bool = True  # runs on the resolved config (all but `config`, which writes it, and `bench`)

    def pattern_job(self) -> Job:
        """The job whose values are its wildcards' names: fills paths into Snakemake patterns."""
        return {w: "{" + w + "}" for w in self.wildcards}

    def job_key(self, job: Mapping[str, str]) -> str:
        return self.key.format(**job)

    def dvc_name(self, job: Mapping[str, str]) -> str:
        key = self.job_key(job)
        return f"{self.name}_{key.replace('/', '_')}" if key else self.name

    def log(self, cfg: Cfg, job: Mapping[str, str]) -> str:
        key = self.job_key(job)
        return fill(LOGS, cfg) + (f"/{self.name}/{key}.log" if key else f"/{self.name}.log")


def _single(cfg: Cfg) -> list[Job]:
    return [{}]


def _data_jobs(cfg: Cfg) -> list[Job]:
    """Every dataset the experiment reads: trained on, tested on across domains, or used by the fidelity analysis."""
    from metalr.config import grid_datasets

    return [{"dataset": d} for d in sorted(set(grid_datasets(cfg)) | {cfg["analysis"]["fidelity"]["dataset"]})]


def _task_jobs(cfg: Cfg) -> list[Job]:
    cells = {(r.dataset, r.ways, r.shots) for r in grid_runs(cfg)}
    return [{"dataset": d, "ways": str(w), "shots": str(s)} for d, w, s in sorted(cells)]


def _cross_domain_task_jobs(cfg: Cfg) -> list[Job]:
    cells = {(train, test, ways, shots) for train, test, ways, shots in cross_domain_cells(cfg)}
    return [{"dataset": d, "test": t, "ways": str(w), "shots": str(s)} for d, t, w, s in sorted(cells)]


def _val_task_jobs(cfg: Cfg) -> list[Job]:
    cells = {(r.dataset, r.ways, r.shots) for r in grid_runs(cfg)} if needs_validation(cfg) else set()
    return [{"dataset": d, "ways": str(w), "shots": str(s)} for d, w, s in sorted(cells)]


def _tuned_jobs(cfg: Cfg) -> list[Job]:
    return [{"dataset": d, "ways": str(w), "shots": str(s), "algorithm": a, "rule": r}
            for d, w, s, a, r in tuned_cells(cfg)]


def trial_count(cfg: Cfg, rule: str) -> int:
    """``tune.trials`` of ``rule``: one integer, or a per-rule mapping (equal by validation)."""
    trials = cfg["tune"]["trials"]
    return trials if isinstance(trials, int) else trials[base_rule(rule)]


def _trial_jobs(cfg: Cfg) -> list[Job]:
    return [{**job, "trial": str(k)} for job in _tuned_jobs(cfg) for k in range(trial_count(cfg, job["rule"]))]


def _trial_files(cfg: Cfg, job: Mapping[str, str], pattern: str = TRIAL) -> list[str]:
    return [fill(pattern, cfg, {**job, "trial": str(k)}) for k in range(trial_count(cfg, job["rule"]))]


def _is_tuned(cfg: Cfg, job: Mapping[str, str]) -> bool:
    """Whether a run's job trains with a tuning result (its chosen.json)."""
    return "tune" in cfg and not is_untuned(job["rule"])


def _run_tuning_inputs(cfg: Cfg, job: Mapping[str, str]) -> dict[str, list[str]]:
    """What a run reads of the tuning stages: its validation tasks, when training validates; its
    chosen.json, when it is tuned."""
    inputs = {}
    if cfg["train"]["validate_every"]:
        inputs["val_tasks"] = [fill(VAL_TASKS, cfg, job)]
    if _is_tuned(cfg, job):
        inputs["tuned"] = [fill(CHOSEN, cfg, {**job, "rule": base_rule(job["rule"])})]
    return inputs


def _run_tuning_argv(cfg: Cfg, job: Mapping[str, str], validation: bool) -> list[str]:
    inputs = _run_tuning_inputs(cfg, job)
    return ((["--val-tasks", inputs["val_tasks"][0]] if validation and "val_tasks" in inputs else [])
            + (["--tuned", inputs["tuned"][0]] if "tuned" in inputs else []))


def _train_jobs(cfg: Cfg) -> list[Job]:
    return [run_job(run) for run in grid_runs(cfg)]


def _cross_domain_jobs(cfg: Cfg) -> list[Job]:
    return [{**run_job(run), "test": test} for run, test in cross_domain_evaluations(cfg)]


def _model_outputs(cfg: Cfg, job: Job) -> dict[str, str]:
    folder = fill(MODEL_DIR, cfg, job)
    return {name.split(".")[0]: f"{folder}/{name}" for name in MODEL_FILES}


def _generated(names: Iterable[str]) -> Callable[[Cfg, Job], dict[str, str]]:
    def outputs(cfg: Cfg, job: Job) -> dict[str, str]:
        folder = fill(GENERATED, cfg)
        return {output_name(name): f"{folder}/{name}" for name in names}
    return outputs


def output_name(file_name: str) -> str:
    """A file name as a Python identifier (Snakemake's named outputs): 'scaling-macros.tex' -> 'scaling_macros_tex'."""
    return file_name.replace(".", "_").replace("-", "_")


def _evaluation_tasks(cfg: Cfg, job: Job) -> str:
    """The task list an evaluation job scores on: its cell's, or across domains the test dataset's unseen classes."""
    return fill(CROSS_DOMAIN_TASKS if "test" in job else TASKS, cfg, job)


def _evaluation_inputs(cfg: Cfg, job: Job, root: Path, test: str) -> dict[str, list[str]]:
    tuned = {key: paths for key, paths in _run_tuning_inputs(cfg, job).items() if key == "tuned"}
    return {"model": [fill(MODEL_DIR, cfg, job) + "/model.pt"], "tasks": [_evaluation_tasks(cfg, job)],
            "data": dataset_files(cfg, test, [cfg["evaluate"]["split"]]), **tuned}


def _evaluation_argv(cfg: Cfg, job: Job, out: str, test: str) -> list[str]:
    tasks = _evaluation_tasks(cfg, job)
    extra = ["--test-dataset", test] if test != job["dataset"] else []
    return ["--run", RUN.format(**job), *extra, "--model", fill(MODEL_DIR, cfg, job) + "/model.pt", "--tasks", tasks,
            *_run_tuning_argv(cfg, job, validation=False), "--out", out]


def _train_reads(cfg: Cfg, job: Job) -> list[str]:
    # a tuned run's settings come from its chosen.json, an input file; its identity keeps the config's values
    return ["experiment", "model", f"algorithms.{job['algorithm']}", f"rules.{base_rule(job['rule'])}", "train",
            "deterministic", "compute.tf32", "compute.autocast"]


def _validation_reads(cfg: Cfg, job: Job) -> list[str]:
    """What scoring validation tasks reads besides the task list (an input): the inner steps it adapts for."""
    return ["evaluate.inner_steps", "evaluate.rules_at_train_steps"]


def _trial_reads(cfg: Cfg, job: Job) -> list[str]:
    """A trial's identity: its run's training keys, validation, and what draws and trains its point (not
    ``tune.trials``: trial k is the k-th point of the seeded sequence whatever the count)."""
    rule = job["rule"]
    return _train_reads(cfg, job) + _validation_reads(cfg, job) + [
        "tune.seed", "tune.sampler", f"tune.space.{rule}",
        "tune.iterations" if isinstance(cfg["tune"]["iterations"], int) else f"tune.iterations.{rule}"]


def _evaluate_reads(cfg: Cfg, job: Job) -> list[str]:
    # The training keys too: evaluation refuses a model trained with other values than the config's.
    return _train_reads(cfg, job) + ["evaluate.inner_steps", "evaluate.rules_at_train_steps", "evaluate.threads",
                                     "evaluate.task_chunk", "evaluate.chunk_memory_mib"]


def _tuning_report_inputs(cfg: Cfg, job: Job, root: Path) -> dict[str, list[str]]:
    tuned = _tuned_jobs(cfg)
    return {"chosen": [fill(CHOSEN, cfg, j) for j in tuned],
            "trials": [path for j in tuned for path in _trial_files(cfg, j)],
            "costs": [path for j in tuned for path in _trial_files(cfg, j, TRIAL_COST)],
            "templates": [f"{TEMPLATES}/tuning.tex.j2", f"{TEMPLATES}/macros.tex.j2"]}


def _tuning_report_argv(cfg: Cfg, job: Job) -> list[str]:
    inputs = _tuning_report_inputs(cfg, job, Path("."))
    return (["--chosen", *inputs["chosen"], "--trials", *inputs["trials"], "--costs", *inputs["costs"],
             "--out-dir", fill(GENERATED, cfg)])


def _appendix_generated(cfg: Cfg) -> list[str]:
    names = REPORT_OUTPUTS + ANALYSIS_OUTPUTS + SCALING_OUTPUTS + (TUNING_OUTPUTS if "tune" in cfg else ())
    return [f"{fill(GENERATED, cfg)}/{n}" for n in names]


def _report_inputs(cfg: Cfg, job: Job, root: Path) -> dict[str, list[str]]:
    runs = [run_job(r) for r in grid_runs(cfg)]
    return {"metrics": [str(p) for p in all_metrics_files(cfg)],
            "logs": [fill(MODEL_DIR, cfg, r) + "/train_log.json" for r in runs],
            "lambdas": [fill(MODEL_DIR, cfg, r) + "/lambdas.npy" for r in runs],
            "templates": _committed(root, TEMPLATES, "*.tex.j2", exclude=ANALYSIS_TEMPLATES + ("tuning.tex.j2",)),
            "paper_results": [cfg["report"]["paper_results"]],
            "sources": [fill(CONFIG_SOURCES, cfg)]}


# `tune`: only whether the experiment tunes, i.e. whether a run needs its chosen.json (an input file)
TRAIN_ALSO_READS = ("compute.device", "compute.batching", "compute.cpu_allocator", "data.root", "grid", "tune")
MODEL_CODE = ("models", "algorithms", "steprules", "precision.py", "allocator.py", "devices.py", "seeding.py")
# what drawing the report's files runs (its statistics come from evaluate/stats.py)
REPORT_CODE = ("report", "evaluate/__init__.py", "evaluate/stats.py")
# what reading task lists and metrics runs (a task list's episodes hold a Task)
# what scoring validation tasks runs (training validates; trials are scored on them)
VALIDATION_CODE = ("evaluate/__init__.py", "evaluate/chunked.py", "evaluate/validation.py")
TASK_CODE = ("data", "algorithms/base.py", "models/base.py", "steprules/base.py")

STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    Stage(
        name="resolved_config", command="config", doc="resolve the layered config files into the experiment's "
        "config and the source of each value (written by Snakemake itself; a stage of its own in DVC)",
        wildcards=(), key="", jobs=_single,
        outputs=lambda cfg, job: {"config": fill(RESOLVED_CONFIG, cfg), "sources": fill(CONFIG_SOURCES, cfg)},
        inputs=lambda cfg, job, root: {}, reads=lambda cfg, job: sorted(cfg),
        argv=lambda cfg, job: [], reads_config=False,
        code=("provenance.py", "algorithms", "steprules")),  # the plug-ins' SPECs: defaults and their sources
    Stage(
        name="data", command="data", doc="build a dataset's preprocessed arrays and manifest",
        wildcards=("dataset",), key="{dataset}", jobs=_data_jobs,
        outputs=lambda cfg, job: {name.split(".")[0]: path for name, path in zip(
            [MANIFEST] + [n for s in SPLITS for n in split_array_files(s)], dataset_files(cfg, job["dataset"]))},
        inputs=lambda cfg, job, root: {"splits": _committed(root, SPLIT_FILES.format(**job), "*.json")},
        reads=lambda cfg, job: [f"data.{job['dataset']}"],
        also_reads=("data.root", "data.downloads", "data.mirror", "data.download"),
        argv=lambda cfg, job: ["--dataset", job["dataset"], "--out", fill(DATASET_DIR, cfg, job)],
        code=("data",)),
    Stage(
        name="tasks", command="tasks", doc="freeze the hashed list of test tasks every method of a cell is scored on",
        wildcards=("dataset", "ways", "shots"), key=CELL, jobs=_task_jobs,
        outputs=lambda cfg, job: {"tasks": fill(TASKS, cfg, job)},
        inputs=lambda cfg, job, root: {"data": dataset_files(cfg, job["dataset"], [cfg["evaluate"]["split"]])},
        reads=lambda cfg, job: ["evaluate.split", "evaluate.queries", "evaluate.tasks", "evaluate.task_seed"],
        also_reads=("data.root", "experiment"),  # experiment: its default output path
        argv=lambda cfg, job: ["--dataset", job["dataset"], "--ways", job["ways"], "--shots", job["shots"],
                               "--out", fill(TASKS, cfg, job)],
        code=TASK_CODE),
    Stage(
        name="tasks_cross_domain", command="tasks", doc="freeze the test tasks of a cross-domain evaluation: the test "
        "dataset's classes less those the training dataset meta-trains on",
        wildcards=("test", "ways", "shots", "dataset"), key="{test}/{ways}w{shots}s-unseen-by-{dataset}",
        jobs=_cross_domain_task_jobs, outputs=lambda cfg, job: {"tasks": fill(CROSS_DOMAIN_TASKS, cfg, job)},
        inputs=lambda cfg, job, root: {"data": dataset_files(cfg, job["test"], [cfg["evaluate"]["split"]]),
                                       "train_manifest": [fill(DATASET_DIR, cfg, job) + "/" + MANIFEST]},
        reads=lambda cfg, job: ["evaluate.split", "evaluate.queries", "evaluate.tasks", "evaluate.task_seed"],
        also_reads=("data.root", "experiment"),
        argv=lambda cfg, job: ["--dataset", job["test"], "--ways", job["ways"], "--shots", job["shots"],
                               "--unseen-by", job["dataset"], "--out", fill(CROSS_DOMAIN_TASKS, cfg, job)],
        code=TASK_CODE),
    Stage(
        name="val_tasks", command="tasks", doc="freeze the hashed list of meta-validation tasks of a cell (tuning "
        "trials and train.validate_every score on them; drawn from the val split only)",
        wildcards=("dataset", "ways", "shots"), key="val/" + CELL, jobs=_val_task_jobs,
        outputs=lambda cfg, job: {"tasks": fill(VAL_TASKS, cfg, job)},
        inputs=lambda cfg, job, root: {"data": dataset_files(cfg, job["dataset"], ["val"])},
        reads=lambda cfg, job: ["evaluate.queries", "evaluate.val_tasks", "evaluate.task_seed"],
        also_reads=("data.root", "experiment"),
        argv=lambda cfg, job: ["--dataset", job["dataset"], "--ways", job["ways"], "--shots", job["shots"],
                               "--split", "val", "--out", fill(VAL_TASKS, cfg, job)],
        code=TASK_CODE),
    Stage(
        name="trial", command="trial", doc="one tuning trial: a short meta-training at one point of the rule's "
        "search space, scored on the validation tasks (never the test split)",
        wildcards=("dataset", "ways", "shots", "algorithm", "rule", "trial"), key=TUNED + "/trial{trial}",
        jobs=_trial_jobs, outputs=lambda cfg, job: {"trial": fill(TRIAL, cfg, job), "cost": fill(TRIAL_COST, cfg, job)},
        inputs=lambda cfg, job, root: {"data": dataset_files(cfg, job["dataset"], ["train", "val"]),
                                       "val_tasks": [fill(VAL_TASKS, cfg, job)]},
        reads=_trial_reads, also_reads=TRAIN_ALSO_READS + ("tune.trials",),
        argv=lambda cfg, job: ["--cell", CELL.format(**job), "--algorithm", job["algorithm"], "--rule", job["rule"],
                               "--trial", job["trial"], "--val-tasks", fill(VAL_TASKS, cfg, job),
                               "--out", fill(TRIAL, cfg, job)],
        code=("data", "train", "tune.py", "evaluate/stats.py") + VALIDATION_CODE + MODEL_CODE),
    Stage(
        name="tune", command="tune", doc="pick the best trial of a cell, algorithm and rule on validation accuracy "
        "(ties to the lower index) into the hashed chosen.json its runs train with",
        wildcards=("dataset", "ways", "shots", "algorithm", "rule"), key=TUNED, jobs=_tuned_jobs,
        outputs=lambda cfg, job: {"chosen": fill(CHOSEN, cfg, job)},
        inputs=lambda cfg, job, root: {"trials": _trial_files(cfg, job)},
        # its identity is its input files, one per trial (tune.trials sets how many)
        reads=lambda cfg, job: [],
        also_reads=("grid", "tune"),
        argv=lambda cfg, job: ["--cell", CELL.format(**job), "--algorithm", job["algorithm"], "--rule", job["rule"],
                               "--trials", *_trial_files(cfg, job), "--out", fill(CHOSEN, cfg, job)],
        code=("tune.py",)),
    Stage(
        name="train", command="train", doc="meta-train one run (resumable from its checkpoint in work/)",
        wildcards=RUN_WILDCARDS, key=RUN, jobs=_train_jobs, outputs=_model_outputs,
        inputs=lambda cfg, job, root: {
            "data": dataset_files(cfg, job["dataset"], ["train", "val"] if cfg["train"]["validate_every"] else ["train"]),
            **_run_tuning_inputs(cfg, job)},
        reads=lambda cfg, job: _train_reads(cfg, job) + (_validation_reads(cfg, job) if cfg["train"]["validate_every"]
                                                         else []),
        also_reads=TRAIN_ALSO_READS,
        argv=lambda cfg, job: ["--run", RUN.format(**job), *_run_tuning_argv(cfg, job, validation=True),
                               "--out-dir", fill(MODEL_DIR, cfg, job)],
        code=("data", "train", "tune.py") + VALIDATION_CODE + MODEL_CODE),
    Stage(
        name="evaluate", command="evaluate", doc="score one run on its cell's frozen test tasks",
        wildcards=RUN_WILDCARDS, key=RUN, jobs=_train_jobs,
        outputs=lambda cfg, job: {"metrics": fill(METRICS, cfg, job)},
        inputs=lambda cfg, job, root: _evaluation_inputs(cfg, job, root, job["dataset"]),
        reads=_evaluate_reads, also_reads=TRAIN_ALSO_READS,
        argv=lambda cfg, job: _evaluation_argv(cfg, job, fill(METRICS, cfg, job), job["dataset"]),
        code=("data", "train", "evaluate", "tune.py") + MODEL_CODE),
    Stage(
        name="evaluate_cross_domain", command="evaluate",
        doc="score one run on another dataset's test tasks, at its training resolution (Table 3)",
        wildcards=("test",) + RUN_WILDCARDS, key="{test}/" + RUN, jobs=_cross_domain_jobs,
        outputs=lambda cfg, job: {"metrics": fill(CROSS_DOMAIN_METRICS, cfg, job)},
        inputs=lambda cfg, job, root: _evaluation_inputs(cfg, job, root, job["test"]),
        reads=_evaluate_reads, also_reads=TRAIN_ALSO_READS + ("cross_domain",),
        argv=lambda cfg, job: _evaluation_argv(cfg, job, fill(CROSS_DOMAIN_METRICS, cfg, job), job["test"]),
        code=("data", "train", "evaluate", "tune.py") + MODEL_CODE),
    Stage(
        name="report", command="report", doc="tables, figures, macros, the choices ledger, the DVC summary and "
        "curves, from every evaluation",
        wildcards=(), key="", jobs=_single, outputs=_generated(REPORT_OUTPUTS), inputs=_report_inputs,
        # the choices ledger lists every value of the config, with its source (and whether it tunes)
        reads=lambda cfg, job: sorted(set(cfg) | {"tune"}), reads_sources=True,
        argv=lambda cfg, job: ["--out-dir", fill(GENERATED, cfg)],
        code=REPORT_CODE + TASK_CODE + ("provenance.py", "tune.py")),  # it checks each metrics file's chain of hashes
    Stage(
        name="tuning_report", command="tuning-report", doc="the appendix's tuning section: search spaces, every "
        "trial, the chosen values, the budget and the sensitivity figure",
        wildcards=(), key="", jobs=lambda cfg: [{}] if "tune" in cfg else [], outputs=_generated(TUNING_OUTPUTS),
        inputs=_tuning_report_inputs, reads=lambda cfg, job: ["experiment", "tune"],
        argv=_tuning_report_argv, code=REPORT_CODE + ("tune.py",)),
    Stage(
        name="fidelity", command="fidelity", doc="FOMAML's and iMAML's meta-gradients against exact MAML (float64)",
        wildcards=(), key="", jobs=_single,
        outputs=lambda cfg, job: {"fidelity": fill(ANALYSIS, cfg) + "/fidelity.json"},
        inputs=lambda cfg, job, root: {"data": dataset_files(cfg, cfg["analysis"]["fidelity"]["dataset"],
                                                             [cfg["analysis"]["fidelity"]["split"]])},
        reads=lambda cfg, job: ["experiment", "analysis.fidelity", "rules.fixed", "algorithms.imaml", "model"],
        also_reads=("data.root",),
        argv=lambda cfg, job: ["--out", fill(ANALYSIS, cfg) + "/fidelity.json"],
        code=("data", "analysis", "train") + MODEL_CODE),
    Stage(
        name="cost", command="cost", doc="time and peak memory per meta-iteration of every algorithm x rule",
        wildcards=(), key="", jobs=_single,
        outputs=lambda cfg, job: {"cost": fill(ANALYSIS, cfg) + "/cost.json"},
        inputs=lambda cfg, job, root: {},
        reads=lambda cfg, job: ["analysis.cost", "train.inner_steps", "compute.device", "compute.cpu_allocator"],
        argv=lambda cfg, job: ["--out", fill(ANALYSIS, cfg) + "/cost.json"],
        code=("bench.py", "analysis", "train") + MODEL_CODE),
    Stage(
        name="analyses", command="analyses", doc="the fidelity and step-size figures, the cost table, their macros",
        wildcards=(), key="", jobs=_single, outputs=_generated(ANALYSIS_OUTPUTS),
        inputs=lambda cfg, job, root: {
            "fidelity": [fill(ANALYSIS, cfg) + "/fidelity.json"], "cost": [fill(ANALYSIS, cfg) + "/cost.json"],
            "rates": [fill(MODEL_DIR, cfg, run_job(r)) + "/rates.json" for r in grid_runs(cfg)],
            "templates": [f"{TEMPLATES}/{name}" for name in ANALYSIS_TEMPLATES]},
        reads=lambda cfg, job: ["experiment", "rules.metaoptimize", "train.outer_lr_adaptation"],
        also_reads=("grid", "tune"),  # which runs (tune.untuned_baseline adds some)
        argv=lambda cfg, job: ["--out-dir", fill(GENERATED, cfg)],
        code=REPORT_CODE + ("algorithms/base.py", "models/base.py", "steprules/base.py", "train/__init__.py",
                            "train/rates.py")),
    Stage(
        name="scaling", command="scaling", doc="time and memory per meta-iteration against inner steps, shots and "
        "task batch",
        wildcards=(), key="", jobs=_single,
        outputs=lambda cfg, job: {"scaling": fill(ANALYSIS, cfg) + "/scaling.json"},
        inputs=lambda cfg, job, root: {},
        reads=lambda cfg, job: ["analysis.scaling", "train.threads", "compute.cpu_allocator", "rules.fixed"]
        + [f"algorithms.{name}" for name in cfg["analysis"]["scaling"]["algorithms"]],
        argv=lambda cfg, job: ["--out", fill(ANALYSIS, cfg) + "/scaling.json"],
        code=("bench.py", "scaling.py", "train") + MODEL_CODE),
    Stage(
        name="scaling_figure", command="scaling-figure", doc="the scaling figure and its macros (plotting only)",
        wildcards=(), key="", jobs=_single, outputs=_generated(SCALING_OUTPUTS),
        inputs=lambda cfg, job, root: {"scaling": [fill(ANALYSIS, cfg) + "/scaling.json"]},
        reads=lambda cfg, job: [],
        argv=lambda cfg, job: ["--scaling-json", fill(ANALYSIS, cfg) + "/scaling.json", "--out-dir",
                               fill(GENERATED, cfg)],
        code=REPORT_CODE),
    Stage(
        name="appendix_pdf", command="pdf", doc="compile paper/appendix.tex over the generated files (latexmk)",
        wildcards=(), key="", jobs=_single,
        outputs=lambda cfg, job: {"pdf": fill(GENERATED, cfg) + "/appendix.pdf"},
        inputs=lambda cfg, job, root: {
            "appendix": [APPENDIX], "sections": _committed(root, SECTIONS, "*.tex"),
            "generated": _appendix_generated(cfg)},
        reads=lambda cfg, job: ["experiment"],
        argv=lambda cfg, job: ["--appendix", APPENDIX, "--gendir", fill(GENERATED, cfg), "--out",
                               fill(GENERATED, cfg) + "/appendix.pdf"],
        code=REPORT_CODE),
    Stage(
        name="bench", command="bench", doc="metalr against the reference loop on this machine (not part of `all`)",
        wildcards=("name",), key="{name}", jobs=lambda cfg: [],
        outputs=lambda cfg, job: {"bench": BENCH.format(**job)}, inputs=lambda cfg, job, root: {},
        reads=lambda cfg, job: [], argv=lambda cfg, job: ["--out", BENCH.format(**job)],
        code=("bench.py",) + MODEL_CODE, reads_config=False),
)}


def default_stages(pdf: bool) -> list[Stage]:
    """The stages whose every job `snakemake` (rule all) and dvc.yaml run: all but config and bench, and
    the PDF only when asked for (``pdf``: report.latex, with `auto` resolved by the caller)."""
    return [s for s in STAGES.values()
            if s.name not in ("resolved_config", "bench") and (pdf or s.name != "appendix_pdf")]


# --------------------------------------------------------------------------------------- identity
def lookup(cfg: Cfg, key: str) -> Any:
    """The value at a dotted key, or None where the resolved config has no such key (e.g. ``algorithms.maml``,
    an algorithm without settings)."""
    if not _has(cfg, key):
        return None
    value: Any = cfg
    for part in key.split("."):
        value = value[part]
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def settings(stage: str | Stage, cfg: Cfg, job: Mapping[str, str], sources: Mapping[str, Any] | None = None) -> dict:
    """A job's identity: its wildcards (``job``) and the resolved value of each key it reads, by dotted key
    (plain data, JSON-safe).

    Training stores it with a model (and refuses to resume a checkpoint with another), evaluation with
    its metrics. ``sources`` (the source of every value, metalr.provenance) is required by the stages
    that read it (the report)."""
    stage = STAGES[stage] if isinstance(stage, str) else stage
    identity = {"job": dict(job), **{key: lookup(cfg, key) for key in stage.reads(cfg, job)}}
    if stage.reads_sources:
        if sources is None:
            raise ValueError(f"stage {stage.name} reads the sources of the config's values; pass them")
        identity["sources"] = _plain(sources)
    return identity


def digest(obj: Any) -> str:
    return io.sha256_json(obj)[:16]


def settings_digest(stage: str | Stage, cfg: Cfg, job: Mapping[str, str],
                    sources: Mapping[str, Any] | None = None) -> str:
    return digest(settings(stage, cfg, job, sources))


def dvc_params(stage: Stage, cfg: Cfg, job: Job) -> list[str]:
    """The keys of ``reads`` the resolved config holds (DVC refuses a listed key that its file lacks)."""
    return [key for key in stage.reads(cfg, job) if _has(cfg, key)]


def _has(cfg: Cfg, key: str) -> bool:
    value: Any = cfg
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return True


# ------------------------------------------------------------------------------------------- code
def code_parts(stage: str | Stage) -> list[str]:
    """Repository paths of the package files and folders a stage's job runs, and the config schema."""
    stage = STAGES[stage] if isinstance(stage, str) else stage
    parts = [part for part in SHARED + stage.code
             if not any(part.startswith(folder + "/") for folder in stage.code)]  # a file of a listed folder
    return [f"{PACKAGE}/{part}" for part in dict.fromkeys(parts)] + [SCHEMA]


def code_files(stage: str | Stage, root: Path) -> list[Path]:
    files: set[Path] = set()
    for part in code_parts(stage):
        path = root / part
        files.update(path.rglob("*.py") if path.is_dir() else [path])
    return sorted(files)


def code_digest(stage: str | Stage, root: Path) -> str:
    """Digest of the content of the files a stage runs: an edit reruns exactly the stages that run the file.
    Content, not timestamps, so a checkout or a copied repository reruns nothing."""
    h = hashlib.sha256()
    for path in code_files(stage, root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------- commands
def argv(stage: str | Stage, cfg: Cfg, job: Mapping[str, str]) -> list[str]:
    """`metalr` arguments after the command and --config."""
    stage = STAGES[stage] if isinstance(stage, str) else stage
    return stage.argv(cfg, dict(job))


def command_line(stage: str | Stage, cfg: Cfg, job: Mapping[str, str], python: str = "python") -> str:
    """The job's shell command as DVC runs it (quoted; the resolved config by path)."""
    stage = STAGES[stage] if isinstance(stage, str) else stage
    config = ["--config", fill(RESOLVED_CONFIG, cfg)] if stage.reads_config else []
    return shlex.join([python, "-m", "metalr", stage.command, *config, *argv(stage, cfg, job)])


# --------------------------------------------------------------------------------- resolved config
RESOLVED_HEADER = ("# The resolved config of experiment {experiment!r}: the config files merged over\n"
                   "# config/config.yaml and validated (`metalr config`). Every job reads this file, never the\n"
                   "# config files themselves. Generated: edit the config files instead.\n")
SOURCES_HEADER = ("# The source of each value of {config} (metalr.provenance): the tag opening its comment in\n"
                  "# the config files, and the layer that set it (0: the defaults; k: the k-th config file).\n")


def resolved_texts(cfg: Cfg, sources: Mapping[str, Any]) -> dict[str, str]:
    """The two files of the config stage, by their pattern name: the resolved config and the sources. Keys
    sorted: the same values give the same bytes however the files were merged (Snakemake's order or the CLI's)."""
    dump = lambda data: yaml.safe_dump(_plain(data), sort_keys=True, allow_unicode=True, width=120)  # noqa: E731
    return {"config": RESOLVED_HEADER.format(experiment=cfg["experiment"]) + dump(cfg),
            "sources": SOURCES_HEADER.format(config=fill(RESOLVED_CONFIG, cfg)) + dump(sources)}


def write_resolved(cfg: Cfg, sources: Mapping[str, Any], root: Path = Path(".")) -> list[Path]:
    """Write the config stage's outputs where their content differs (atomically); return those written.
    Unchanged files keep their bytes and timestamps."""
    written = []
    outputs = STAGES["resolved_config"].outputs(cfg, {})
    for name, text in resolved_texts(cfg, sources).items():
        path = root / outputs[name]
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            io.write_text(path, text)
            written.append(path)
    return written

