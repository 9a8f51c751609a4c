rule evaluate:
    """Score one trained run on its cell's frozen test tasks: mean, 95% CI, per-task accuracies.
    evaluate_cross_domain reuses it on another dataset's test tasks, at the training resolution (Table 3)."""
    input:
        unpack(stage_inputs("evaluate")),
    output:
        **stage_outputs("evaluate"),
    params:
        settings=stage_settings("evaluate"),
        code=CODE["evaluate"],
        args=stage_args("evaluate"),
    threads: config["evaluate"]["threads"]
    conda:
        CONDA_ENV
    log:
        stage_log("evaluate"),
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=GPU_PER_JOB,
    shell:
        stage_shell("evaluate")


use rule evaluate as evaluate_cross_domain with:
    input:
        unpack(stage_inputs("evaluate_cross_domain")),
    output:
        **stage_outputs("evaluate_cross_domain"),
    params:
        settings=stage_settings("evaluate_cross_domain"),
        code=CODE["evaluate_cross_domain"],
        args=stage_args("evaluate_cross_domain"),
    log:
        stage_log("evaluate_cross_domain"),
