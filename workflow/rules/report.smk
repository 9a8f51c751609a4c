# Outputs shown in `snakemake --report report.html`: caption file (workflow/report/) and category.
IN_HTML_REPORT = {
    "summary.csv": ("summary", "Results"),
    "paired.csv": ("paired", "Results"),
    "ways.pdf": ("ways", "Figures"),
    "cross_domain.pdf": ("cross_domain", "Figures"),
    "lambda.png": ("lambda", "Figures"),
    "training.pdf": ("training", "Figures"),
}


rule report:
    """Aggregate every evaluation (in- and cross-domain) into the LaTeX tables, macros and figures."""
    input:
        metrics=metrics_files(),
        logs=model_files("train_log.json"),
        lambdas=model_files("lambdas.npy"),
        templates=sorted(str(p) for p in Path("paper/templates").glob("*.tex.j2") if p.name not in ANALYSIS_TEMPLATES),
        configs=CONFIGFILES,  # the choices ledger lists every value and the tags in its comments
        paper_results=config["report"]["paper_results"],
        code=sources("report"),
    output:
        [
            report(f"{GENERATED}/{name}", caption=f"../report/{IN_HTML_REPORT[name][0]}.rst",
                   category=IN_HTML_REPORT[name][1])
            if name in IN_HTML_REPORT else f"{GENERATED}/{name}"
            for name in REPORT_FILES
        ],
    params:
        config_args=CONFIG_ARGS,
        out_dir=lambda w, output: os.path.dirname(output[0]),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/report.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "metalr report {params.config_args} --out-dir {params.out_dir} > {log} 2>&1"


rule appendix_pdf:
    """Compile paper/appendix.tex over the generated files (needs latexmk)."""
    input:
        appendix="paper/appendix.tex",
        generated=[f"{GENERATED}/{name}" for name in REPORT_FILES],
        analyses=[f"{GENERATED}/{name}" for name in ANALYSIS_FILES + SCALING_FILES],
        sections=sorted(map(str, Path("paper/sections").glob("*.tex"))),
        code=sources("pdf"),
    output:
        f"{GENERATED}/appendix.pdf",
    params:
        config_args=CONFIG_ARGS,
        gendir=lambda w, input: os.path.dirname(input.generated[0]),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/appendix_pdf.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "metalr pdf {params.config_args} --appendix {input.appendix} --gendir {params.gendir} "
        "--out {output} > {log} 2>&1"
