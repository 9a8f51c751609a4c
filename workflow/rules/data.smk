rule data:
    """Build a dataset's preprocessed uint8 arrays and manifest (raw archives: data.mirror or data.downloads)."""
    input:
        unpack(stage_inputs("data")),
    output:
        **stage_outputs("data"),
    params:
        settings=stage_settings("data"),
        code=CODE["data"],
        args=stage_args("data"),
    conda:
        CONDA_ENV
    log:
        stage_log("data"),
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        stage_shell("data")


rule tasks:
    """Freeze the hashed list of evaluation tasks shared by every method of a cell."""
    input:
        unpack(stage_inputs("tasks")),
    output:
        **stage_outputs("tasks"),
    params:
        settings=stage_settings("tasks"),
        code=CODE["tasks"],
        args=stage_args("tasks"),
    conda:
        CONDA_ENV
    log:
        stage_log("tasks"),
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        stage_shell("tasks")


rule tasks_cross_domain:
    """Freeze the test tasks of a cross-domain evaluation: the test dataset's classes less those the training
    dataset meta-trains on (same WordNet id), each left out class named in the list."""
    input:
        unpack(stage_inputs("tasks_cross_domain")),
    output:
        **stage_outputs("tasks_cross_domain"),
    params:
        settings=stage_settings("tasks_cross_domain"),
        code=CODE["tasks_cross_domain"],
        args=stage_args("tasks_cross_domain"),
    conda:
        CONDA_ENV
    log:
        stage_log("tasks_cross_domain"),
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        stage_shell("tasks_cross_domain")


rule val_tasks:
    """Freeze the hashed list of meta-validation tasks of a cell (drawn from the val split only): tuning trials
    and train.validate_every score on them."""
    input:
        unpack(stage_inputs("val_tasks")),
    output:
        **stage_outputs("val_tasks"),
    params:
        settings=stage_settings("val_tasks"),
        code=CODE["val_tasks"],
        args=stage_args("val_tasks"),
    conda:
        CONDA_ENV
    log:
        stage_log("val_tasks"),
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        stage_shell("val_tasks")
