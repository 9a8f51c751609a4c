rule evaluate:
    """Score one trained run on its cell's frozen test tasks: mean, 95% CI, per-task accuracies.
    evaluate_cross_domain reuses it on another dataset's test tasks, at the training resolution (Table 3)."""
    input:
        model=f"{MODEL_DIR}/model.pt",
        tasks=TASKS,
        data=lambda w: dataset_files(w.dataset),
        code=sources("evaluate"),
    output:
        METRICS,
    params:
        settings=lambda w: metalr_config.digest(metalr_config.evaluate_slice(config, run_of(w))),
        config_args=CONFIG_ARGS,
        test_flag="",
    threads: config["evaluate"]["threads"]
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/evaluate/{RUN_PATTERN}.log",
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=GPU_PER_JOB,
    shell:
        "metalr evaluate {params.config_args} --run {wildcards.dataset}/{wildcards.ways}w{wildcards.shots}s/"
        "{wildcards.algorithm}/{wildcards.rule}/seed{wildcards.seed} {params.test_flag} "
        "--model {input.model} --tasks {input.tasks} --out {output} > {log} 2>&1"


use rule evaluate as evaluate_cross_domain with:
    input:
        model=f"{MODEL_DIR}/model.pt",
        tasks=CROSS_TASKS,
        data=lambda w: dataset_files(w.test),
        code=sources("evaluate"),
    output:
        CROSS_METRICS,
    params:
        settings=lambda w: metalr_config.digest(metalr_config.evaluate_slice(config, run_of(w))),
        config_args=CONFIG_ARGS,
        test_flag=lambda w: f"--test-dataset {w.test}",
    log:
        f"{LOGS}/evaluate_cross_domain/{{test}}/{RUN_PATTERN}.log",
