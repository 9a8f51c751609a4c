# Helpers shared by the rules; no rules. Each rule's inputs, outputs, params and command come from the table
# of stages (metalr.stages). Planning imports the table and the config, nothing heavier (no torch, pandas or
# matplotlib), so a dry run of any grid takes seconds.
import os
import shlex
import shutil
import sys
from pathlib import Path

from metalr import config as metalr_config
from metalr import devices as metalr_devices
from metalr import provenance as metalr_provenance
from metalr import stages as metalr_stages

try:
    config.update(metalr_config.resolve(config))  # the plug-ins' default settings filled in, then validated
except metalr_config.ConfigError as error:
    sys.exit(f"metalr: {error}")

# The config files' merged values; an override given with `--config key=value` would be missing from the
# resolved config the jobs read, so it is refused rather than silently ignored.
CONFIGFILES = ["config/config.yaml", *(os.path.relpath(f) for f in workflow.overwrite_configfiles)]
if metalr_config.load(CONFIGFILES) != config:
    sys.exit(
        "metalr: command-line --config overrides are not passed to the jobs; "
        "put the values in a config file and pass it with --configfile"
    )

STAGES = metalr_stages.STAGES
ROOT = Path(workflow.basedir)
SOURCES = metalr_provenance.sources(CONFIGFILES, config)
# Jobs read the config by content: the resolved config (and the source of each value) of the experiment.
# Written when missing before planning (jobs declare it as an input), and rewritten before any job runs when
# its content differs (onstart). Its timestamp never reruns a job (ancient); each job's params carry the
# digest of exactly the values it reads. It is not a rule: a job that reruns before an ancient() input's
# consumers hides their own changed params from Snakemake 9 (the consumers are skipped, not checked).
RESOLVED = STAGES["resolved_config"].outputs(config, {})
if not all(Path(path).is_file() for path in RESOLVED.values()):
    metalr_stages.write_resolved(config, SOURCES)

# The interpreter that runs Snakemake runs every job (`"$METALR_PYTHON" -m metalr ...`), so `.venv/bin/snakemake`
# works without an activated environment; under `--sdm conda`, the job environment's own `python`. Set in the
# shell prefix, neither a param nor text of a rule's command: Snakemake compares those to decide reruns, and a
# moved environment must rerun nothing.
IN_CONDA = any(method.name == "CONDA" for method in workflow.deployment_settings.deployment_method)
PYTHON = "python" if IN_CONDA else sys.executable
shell.prefix(f"set -euo pipefail; export METALR_PYTHON={shlex.quote(PYTHON)}; ".replace("{", "{{").replace("}", "}}"))
CONDA_ENV = "../envs/metalr.yaml"
# GPUs per training/evaluation job: one when the jobs will run on CUDA. A cluster profile sets it
# explicitly (workflow/profiles/slurm), since the planning host may have no GPU.
GPU_PER_JOB = int(
    config["compute"]["device"] == "cuda"
    or (config["compute"]["device"] == "auto" and metalr_devices.local_gpu_count() > 0)
)
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
# Jobs that time code run alone, so no other job skews their figures: run locally (or inside a cluster
# job, where Snakemake runs over the job's allocation) they reserve every core. A cluster executor's
# submitting process has no machine to fill (workflow.cores is unset, or a cap on the whole run), so
# it asks one CPU and the profile gives these jobs a node of their own (workflow/profiles/slurm).
# A callable: workflow.cores exists only when --cores is given, which --unlock and some dry runs lack.
TIMING_THREADS = lambda wildcards: workflow.cores if workflow.local_exec or workflow.remote_exec else 1  # noqa: E731

wildcard_constraints:
    dataset="[^/]+",
    test="[^/]+",
    algorithm="[^/]+",
    rule="[^/]+",
    ways="[0-9]+",
    shots="[0-9]+",
    seed="[0-9]+",
    trial="[0-9]+",
    name="[^/]+",

# Per stage, what its rule declares. Code is a content digest, params.code; an edit reruns exactly the
# stages that run the file, and a checkout or a copied repository reruns nothing.
CODE = {name: metalr_stages.code_digest(name, ROOT) for name in STAGES}


def stage_inputs(name):
    stage = STAGES[name]

    def inputs(wildcards):
        files = stage.inputs(config, dict(wildcards), ROOT)
        resolved = {"config": ancient(RESOLVED["config"])} if stage.reads_config else {}
        return {**resolved, **{key: [ancient(f) if f in RESOLVED.values() else f for f in paths]
                               for key, paths in files.items()}}
    return inputs


def stage_outputs(name):
    return STAGES[name].outputs(config, STAGES[name].pattern_job())


def stage_settings(name):
    """The digest of the job and the resolved values it reads: its identity for Snakemake's params trigger."""
    return lambda wildcards: metalr_stages.settings_digest(name, config, dict(wildcards), SOURCES)


def stage_args(name):
    return lambda wildcards: shlex.join(metalr_stages.argv(name, config, dict(wildcards)))


def stage_log(name):
    return STAGES[name].log(config, STAGES[name].pattern_job())


def stage_shell(name):
    """The command template: the same for every job of a stage and every machine (Snakemake's code trigger)."""
    stage = STAGES[name]
    config_arg = " --config {input.config:q}" if stage.reads_config else ""
    return f'"$METALR_PYTHON" -m metalr {stage.command}{config_arg} {{params.args}} > {{log:q}} 2>&1'


def final_targets():
    return [path for stage in metalr_stages.default_stages(WANT_PDF) for job in stage.jobs(config)
            for path in stage.outputs(config, job).values()]
