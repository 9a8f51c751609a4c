rule data:
    """Build a dataset's preprocessed uint8 arrays and manifest (raw archives: data.mirror or data.downloads)."""
    input:
        code=sources("data"),
        splits=lambda w: split_files(w.dataset),
    output:
        dataset_files("{dataset}"),
    params:
        settings=lambda w: metalr_config.digest(config["data"][w.dataset]),
        config_args=CONFIG_ARGS,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/data/{{dataset}}.log",
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "metalr data {params.config_args} --dataset {wildcards.dataset} > {log} 2>&1"


rule tasks:
    """Freeze the hashed list of evaluation tasks shared by every method of a cell."""
    input:
        data=lambda w: dataset_files(w.dataset),
        code=sources("tasks"),
    output:
        TASKS,
    params:
        settings=lambda w: metalr_config.digest(
            metalr_config.tasks_slice(config, w.dataset, int(w.ways), int(w.shots))
        ),
        config_args=CONFIG_ARGS,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/tasks/{{dataset}}/{{ways}}w{{shots}}s.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "metalr tasks {params.config_args} --dataset {wildcards.dataset} "
        "--ways {wildcards.ways} --shots {wildcards.shots} --out {output} > {log} 2>&1"


rule tasks_cross_domain:
    """Freeze the test tasks of a cross-domain evaluation: the test dataset's classes less those the training
    dataset meta-trains on (same WordNet id), each left out class named in the list."""
    input:
        data=lambda w: dataset_files(w.test),
        train_manifest=f"{DATA_ROOT}/{{dataset}}/manifest.json",
        code=sources("tasks"),
    output:
        CROSS_TASKS,
    params:
        settings=lambda w: metalr_config.digest(
            metalr_config.tasks_slice(config, w.test, int(w.ways), int(w.shots))
        ),
        config_args=CONFIG_ARGS,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/tasks/{{test}}/{{ways}}w{{shots}}s-unseen-by-{{dataset}}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "metalr tasks {params.config_args} --dataset {wildcards.test} --ways {wildcards.ways} "
        "--shots {wildcards.shots} --unseen-by {wildcards.dataset} --out {output} > {log} 2>&1"
