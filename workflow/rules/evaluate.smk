rule evaluate:
    """Score one trained run on its cell's frozen test tasks: mean, 95% CI, per-task accuracies."""
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
        "{wildcards.algorithm}/{wildcards.rule}/seed{wildcards.seed} "
        "--model {input.model} --tasks {input.tasks} --out {output} > {log} 2>&1"


rule evaluate_cross_domain:
    """Score a trained run on another dataset's frozen test tasks, at the training resolution (Table 3)."""
    input:
        model=f"{MODEL_DIR}/model.pt",
        tasks=f"{RESULTS}/tasks/{{test}}/{{ways}}w{{shots}}s.json",
        data=lambda w: dataset_files(w.test),
        code=sources("evaluate"),
    output:
        CROSS_METRICS,
    params:
        settings=lambda w: metalr_config.digest(metalr_config.evaluate_slice(config, run_of(w))),
        config_args=CONFIG_ARGS,
    threads: config["evaluate"]["threads"]
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/evaluate_cross_domain/{{test}}/{RUN_PATTERN}.log",
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=GPU_PER_JOB,
    shell:
        "metalr evaluate {params.config_args} --run {wildcards.dataset}/{wildcards.ways}w{wildcards.shots}s/"
        "{wildcards.algorithm}/{wildcards.rule}/seed{wildcards.seed} --test-dataset {wildcards.test} "
        "--model {input.model} --tasks {input.tasks} --out {output} > {log} 2>&1"
