rule train:
    """Meta-train one run; resumable from work/ checkpoints."""
    input:
        data=lambda w: dataset_files(w.dataset, splits=["train"]),
        code=sources("train"),
    output:
        model=f"{MODEL_DIR}/model.pt",
        log=f"{MODEL_DIR}/train_log.json",
        lambdas=f"{MODEL_DIR}/lambdas.npy",
        rates=f"{MODEL_DIR}/rates.json",
    params:
        settings=lambda w: metalr_config.digest(metalr_config.train_slice(config, run_of(w))),
        config_args=CONFIG_ARGS,
        out_dir=lambda w, output: os.path.dirname(output.model),
    threads: config["train"]["threads"]
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/train/{RUN_PATTERN}.log",
    resources:
        mem_mb=8000,
        runtime=24 * 60,
        gpu=GPU_PER_JOB,
    shell:
        "metalr train {params.config_args} --run {wildcards.dataset}/{wildcards.ways}w{wildcards.shots}s/"
        "{wildcards.algorithm}/{wildcards.rule}/seed{wildcards.seed} --out-dir {params.out_dir} > {log} 2>&1"
