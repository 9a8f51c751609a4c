# The appendix's analyses: gradient fidelity, the cost of every algorithm x rule, and the figures,
# table and macros drawn from them and from the runs' step-size trajectories (rates.json).


rule fidelity:
    """FOMAML's and iMAML's meta-gradients against exact MAML, float64, on one seeded batch."""
    input:
        unpack(stage_inputs("fidelity")),
    output:
        **stage_outputs("fidelity"),
    params:
        settings=stage_settings("fidelity"),
        code=CODE["fidelity"],
        args=stage_args("fidelity"),
    conda:
        CONDA_ENV
    log:
        stage_log("fidelity"),
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        stage_shell("fidelity")


rule cost:
    """Time per meta-iteration and peak memory of every algorithm x rule of analysis.cost (metalr.bench)."""
    input:
        unpack(stage_inputs("cost")),
    output:
        **stage_outputs("cost"),
    params:
        settings=stage_settings("cost"),
        code=CODE["cost"],
        args=stage_args("cost"),
    threads: TIMING_THREADS
    conda:
        CONDA_ENV
    log:
        stage_log("cost"),
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=GPU_PER_JOB,
    shell:
        stage_shell("cost")


rule analyses:
    """Fidelity and step-size figures, the cost table and the analyses' macros for the appendix."""
    input:
        unpack(stage_inputs("analyses")),
    output:
        **stage_outputs("analyses"),
    params:
        settings=stage_settings("analyses"),
        code=CODE["analyses"],
        args=stage_args("analyses"),
    conda:
        CONDA_ENV
    log:
        stage_log("analyses"),
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        stage_shell("analyses")
