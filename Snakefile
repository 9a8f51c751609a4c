# metalr: the whole reproduction. `snakemake --cores all --configfile config/quick.yaml`
# Rules are thin: each is derived from the table of stages (metalr.stages) and calls the `metalr` CLI
# through the interpreter that runs Snakemake. The config is validated before any job is planned.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/analysis.smk"


rule all:
    input:
        final_targets(),
    default_target: True


onstart:
    # Jobs read the resolved config: rewritten here, before any job runs, when its content changed.
    metalr_stages.write_resolved(config, SOURCES)


onsuccess:
    # The handover to DVC: record what this run made in dvc.lock, so `dvc repro` reruns nothing.
    from metalr import dvcgen

    done = [(job.rule.name, dict(job.wildcards_dict)) for job in workflow.dag.jobs]
    print(f"metalr: {dvcgen.record(CONFIGFILES, done)}", file=sys.stderr)
