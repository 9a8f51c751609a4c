rule train:
    """Meta-train one run; resumable from work/ checkpoints."""
    input:
        unpack(stage_inputs("train")),
    output:
        **stage_outputs("train"),
    params:
        settings=stage_settings("train"),
        code=CODE["train"],
        args=stage_args("train"),
    threads: config["train"]["threads"]
    conda:
        CONDA_ENV
    log:
        stage_log("train"),
    resources:
        mem_mb=8000,
        runtime=24 * 60,
        gpu=GPU_PER_JOB,
    shell:
        stage_shell("train")
