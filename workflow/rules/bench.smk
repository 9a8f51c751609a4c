rule bench:
    """`metalr bench` on this machine (not part of `all`): snakemake results/bench/<name>.json"""
    input:
        code=sources("bench"),
    output:
        "results/bench/{name}.json",
    threads: TIMING_THREADS
    conda:
        CONDA_ENV
    log:
        "logs/bench/{name}.log",
    resources:
        mem_mb=16000,
        runtime=24 * 60,
        gpu=GPU_PER_JOB,
    shell:
        "metalr bench --out {output} > {log} 2>&1"


rule scaling:
    """Time and memory per meta-iteration against inner steps, shots and task batch (analysis.scaling)."""
    input:
        code=sources("scaling"),
    output:
        f"{RESULTS}/analysis/scaling.json",
    params:
        settings=metalr_config.digest([config["analysis"]["scaling"], config["compute"]]),
        config_args=CONFIG_ARGS,
    threads: TIMING_THREADS
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/analysis/scaling.log",
    resources:
        mem_mb=8000,
        runtime=6 * 60,
        gpu=GPU_PER_JOB,
    shell:
        "metalr scaling {params.config_args} --out {output} > {log} 2>&1"


rule scaling_figure:
    """The scaling figure and its LaTeX macros (plotting only: restyling never re-measures)."""
    input:
        json=f"{RESULTS}/analysis/scaling.json",
        code=sources("scaling_figure"),
    output:
        figure=f"{GENERATED}/scaling.pdf",
        macros=f"{GENERATED}/scaling-macros.tex",
    params:
        config_args=CONFIG_ARGS,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/analysis/scaling-figure.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "metalr scaling-figure {params.config_args} --scaling-json {input.json} "
        "--out-dir $(dirname {output.figure}) > {log} 2>&1"
