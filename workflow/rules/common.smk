# Helpers shared by the rules: config validation, the grid, paths and source dependencies. No rules.
import os
import shutil
import sys
from pathlib import Path

from metalr import config as metalr_config
from metalr import paths as metalr_paths
from metalr import devices as metalr_devices
from metalr import stages as metalr_stages
from metalr.data.arrays import SPLITS, images_file, labels_file
from metalr.data.splits import split_files
from metalr.report.analyses import ANALYSIS_OUTPUTS, ANALYSIS_TEMPLATES
from metalr.report.scaling import SCALING_OUTPUTS
from metalr.report.build import OUTPUTS

try:
    config.update(metalr_config.resolve(config))  # the plug-ins' default settings filled in, then validated
except metalr_config.ConfigError as error:
    sys.exit(f"metalr: {error}")

# Jobs call the CLI with the same config files Snakemake was given; an override given with
# `--config key=value` would not reach them, so it is refused rather than silently ignored.
CONFIGFILES = ["config/config.yaml", *(os.path.relpath(f) for f in workflow.overwrite_configfiles)]
if metalr_config.load(CONFIGFILES) != config:
    sys.exit(
        "metalr: command-line --config overrides are not passed to the jobs; "
        "put the values in a config file and pass it with --configfile"
    )
CONFIG_ARGS = " ".join(f"--configfile {f}" for f in CONFIGFILES)

CONDA_ENV = "../envs/metalr.yaml"
# GPUs per training/evaluation job: one when the jobs will run on CUDA. A cluster profile sets it
# explicitly (workflow/profiles/slurm), since the planning host may have no GPU.
GPU_PER_JOB = int(
    config["compute"]["device"] == "cuda"
    or (config["compute"]["device"] == "auto" and metalr_devices.local_gpu_count() > 0)
)
EXPERIMENT = config["experiment"]
DATA_ROOT = config["data"]["root"]
RESULTS = f"results/{EXPERIMENT}"
GENERATED = f"paper/generated/{EXPERIMENT}"
LOGS = f"logs/{EXPERIMENT}"
RUNS = metalr_config.grid_runs(config)
WANT_PDF = config["report"]["latex"] is True or (
    config["report"]["latex"] == "auto" and shutil.which("latexmk") is not None
)
if config["report"]["latex"] == "auto" and not WANT_PDF:
    print(
        "metalr: latexmk is not installed, so the appendix PDF is skipped (the LaTeX sources are "
        "still generated). Install it with: apt-get install latexmk texlive-latex-recommended "
        "texlive-fonts-recommended",
        file=sys.stderr,
    )

wildcard_constraints:
    dataset="[^/]+",
    test="[^/]+",
    algorithm="[^/]+",
    rule="[^/]+",
    ways="[0-9]+",
    shots="[0-9]+",
    seed="[0-9]+",

def sources(stage):
    """Package source files a stage's job runs: editing one reruns exactly the jobs that list it."""
    return metalr_stages.stage_sources(stage, root=Path(workflow.basedir))


def dataset_files(dataset, splits=SPLITS):
    files = [f"{DATA_ROOT}/{dataset}/manifest.json"]
    for split in splits:
        files += [f"{DATA_ROOT}/{dataset}/{images_file(split)}", f"{DATA_ROOT}/{dataset}/{labels_file(split)}"]
    return files


def run_of(wildcards):
    return metalr_config.Run(
        wildcards.dataset, int(wildcards.ways), int(wildcards.shots),
        wildcards.algorithm, wildcards.rule, int(wildcards.seed),
    )


RUN_PATTERN = "{dataset}/{ways}w{shots}s/{algorithm}/{rule}/seed{seed}"
MODEL_DIR = f"{RESULTS}/models/{RUN_PATTERN}"
METRICS = f"{RESULTS}/metrics/{RUN_PATTERN}.json"
TASKS = f"{RESULTS}/tasks/{{dataset}}/{{ways}}w{{shots}}s.json"
CROSS_TASKS = f"{RESULTS}/tasks/{{test}}/{{ways}}w{{shots}}s-unseen-by-{{dataset}}.json"
REPORT_FILES = list(OUTPUTS)
ANALYSIS_FILES = list(ANALYSIS_OUTPUTS)
SCALING_FILES = list(SCALING_OUTPUTS)
# Jobs that time code run alone, so no other job skews their figures: run locally (or inside a cluster
# job, where Snakemake runs over the job's allocation) they reserve every core. A cluster executor's
# submitting process has no machine to fill (workflow.cores is unset, or a cap on the whole run), so
# it asks one CPU and the profile gives these jobs a node of their own (workflow/profiles/slurm).
# A callable: workflow.cores exists only when --cores is given, which --unlock and some dry runs lack.
TIMING_THREADS = lambda wildcards: workflow.cores if workflow.local_exec or workflow.remote_exec else 1  # noqa: E731


CROSS_METRICS = f"{RESULTS}/cross_domain/{{test}}/{RUN_PATTERN}.json"


def metrics_files():
    """In-domain and cross-domain metrics: everything the report aggregates."""
    return [str(path) for path in metalr_paths.all_metrics_files(config)]


def model_files(name):
    return [str(metalr_paths.model_dir(config, run) / name) for run in RUNS]


def final_targets():
    targets = [f"{GENERATED}/{name}" for name in REPORT_FILES + ANALYSIS_FILES + SCALING_FILES]
    if WANT_PDF:
        targets.append(f"{GENERATED}/appendix.pdf")
    return targets
