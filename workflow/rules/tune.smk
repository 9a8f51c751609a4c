rule trial:
    """One tuning trial: a short meta-training at one point of the rule's search space, scored on the cell's
    validation tasks. Each trial is its own job (parallel, cached, submitted alone under a cluster profile)."""
    input:
        unpack(stage_inputs("trial")),
    output:
        **stage_outputs("trial"),
    params:
        settings=stage_settings("trial"),
        code=CODE["trial"],
        args=stage_args("trial"),
    threads: config["train"]["threads"]
    conda:
        CONDA_ENV
    log:
        stage_log("trial"),
    resources:
        mem_mb=8000,
        runtime=24 * 60,
        gpu=GPU_PER_JOB,
    shell:
        stage_shell("trial")


rule tune:
    """Pick the best trial of a cell, algorithm and rule (validation accuracy; ties to the lower index) into
    the hashed chosen.json that its final runs train and are evaluated with."""
    input:
        unpack(stage_inputs("tune")),
    output:
        **stage_outputs("tune"),
    params:
        settings=stage_settings("tune"),
        code=CODE["tune"],
        args=stage_args("tune"),
    conda:
        CONDA_ENV
    log:
        stage_log("tune"),
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        stage_shell("tune")


rule tuning_report:
    """The appendix's tuning section: search spaces, every trial, the chosen values, the budget, sensitivity."""
    input:
        unpack(stage_inputs("tuning_report")),
    output:
        **stage_outputs("tuning_report"),
    params:
        settings=stage_settings("tuning_report"),
        code=CODE["tuning_report"],
        args=stage_args("tuning_report"),
    conda:
        CONDA_ENV
    log:
        stage_log("tuning_report"),
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        stage_shell("tuning_report")
