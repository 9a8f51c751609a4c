rule bench:
    """`metalr bench` on this machine (not part of `all`): snakemake results/bench/<name>.json"""
    input:
        code=sources("bench"),
    output:
        "results/bench/{name}.json",
    conda:
        CONDA_ENV
    log:
        "logs/bench/{name}.log",
    resources:
        mem_mb=16000,
        runtime=24 * 60,
        gpu=GPU_PER_JOB,
    shell:
        "metalr bench --out {output} > {log} 2>&1"
