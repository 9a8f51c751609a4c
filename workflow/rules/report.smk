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
        unpack(stage_inputs("report")),
    output:
        **{
            metalr_stages.output_name(name): report(
                stage_outputs("report")[metalr_stages.output_name(name)],
                caption=f"../report/{IN_HTML_REPORT[name][0]}.rst", category=IN_HTML_REPORT[name][1],
            ) if name in IN_HTML_REPORT else stage_outputs("report")[metalr_stages.output_name(name)]
            for name in metalr_stages.REPORT_OUTPUTS
        },
    params:
        settings=stage_settings("report"),
        code=CODE["report"],
        args=stage_args("report"),
    conda:
        CONDA_ENV
    log:
        stage_log("report"),
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        stage_shell("report")


rule appendix_pdf:
    """Compile paper/appendix.tex over the generated files (needs latexmk)."""
    input:
        unpack(stage_inputs("appendix_pdf")),
    output:
        **stage_outputs("appendix_pdf"),
    params:
        settings=stage_settings("appendix_pdf"),
        code=CODE["appendix_pdf"],
        args=stage_args("appendix_pdf"),
    conda:
        CONDA_ENV
    log:
        stage_log("appendix_pdf"),
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        stage_shell("appendix_pdf")
