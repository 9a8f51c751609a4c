rule bench:
    """`metalr bench` on this machine (not part of `all`): snakemake results/bench/<name>.json"""
    input:
        unpack(stage_inputs("bench")),
    output:
        **stage_outputs("bench"),
    params:
        code=CODE["bench"],
        args=stage_args("bench"),
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
        stage_shell("bench")


rule scaling:
    """Time and memory per meta-iteration against inner steps, shots and task batch (analysis.scaling)."""
    input:
        unpack(stage_inputs("scaling")),
    output:
        **stage_outputs("scaling"),
    params:
        settings=stage_settings("scaling"),
        code=CODE["scaling"],
        args=stage_args("scaling"),
    threads: TIMING_THREADS
    conda:
        CONDA_ENV
    log:
        stage_log("scaling"),
    resources:
        mem_mb=8000,
        runtime=6 * 60,
        gpu=GPU_PER_JOB,
    shell:
        stage_shell("scaling")


rule scaling_figure:
    """The scaling figure and its LaTeX macros (plotting only: restyling never re-measures)."""
    input:
        unpack(stage_inputs("scaling_figure")),
    output:
        **stage_outputs("scaling_figure"),
    params:
        settings=stage_settings("scaling_figure"),
        code=CODE["scaling_figure"],
        args=stage_args("scaling_figure"),
    conda:
        CONDA_ENV
    log:
        stage_log("scaling_figure"),
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        stage_shell("scaling_figure")
