# The appendix's analyses: gradient fidelity, the cost of every algorithm x rule, and the figures,
# table and macros drawn from them and from the runs' step-size trajectories (rates.json).
FIDELITY = config["analysis"]["fidelity"]


rule fidelity:
    """FOMAML's and iMAML's meta-gradients against exact MAML, float64, on one seeded batch."""
    input:
        data=dataset_files(FIDELITY["dataset"], splits=[FIDELITY["split"]]),
        code=sources("fidelity"),
    output:
        f"{RESULTS}/analysis/fidelity.json",
    params:
        settings=metalr_config.digest([FIDELITY, config["rules"]["fixed"], config["algorithms"]["imaml"],
                                       config["model"], config["data"].get(FIDELITY["dataset"])]),
        config_args=CONFIG_ARGS,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/analysis/fidelity.log",
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "metalr fidelity {params.config_args} --out {output} > {log} 2>&1"


rule cost:
    """Time per meta-iteration and peak memory of every algorithm x rule of analysis.cost (metalr.bench)."""
    input:
        code=sources("cost"),
    output:
        f"{RESULTS}/analysis/cost.json",
    params:
        settings=metalr_config.digest([config["analysis"]["cost"], config["train"]["inner_steps"],
                                       config["compute"]["device"]]),
        config_args=CONFIG_ARGS,
    threads: TIMING_THREADS
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/analysis/cost.log",
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=GPU_PER_JOB,
    shell:
        "metalr cost {params.config_args} --out {output} > {log} 2>&1"


rule analyses:
    """Fidelity and step-size figures, the cost table and the analyses' macros for the appendix."""
    input:
        fidelity=rules.fidelity.output[0],
        cost=rules.cost.output[0],
        rates=model_files("rates.json"),
        templates=[f"paper/templates/{name}" for name in ANALYSIS_TEMPLATES],
        code=sources("report"),
    output:
        [f"{GENERATED}/{name}" for name in ANALYSIS_FILES],
    params:
        settings=metalr_config.digest([config["rules"]["metaoptimize"], config["train"]["outer_lr_adaptation"]]),
        config_args=CONFIG_ARGS,
        out_dir=lambda w, output: os.path.dirname(output[0]),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/analyses.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "metalr analyses {params.config_args} --out-dir {params.out_dir} > {log} 2>&1"
