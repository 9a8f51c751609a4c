import pytest

from metalr.report.pdf import latex_available
from tests.integration.workflow_helpers import SNAKEMAKE, copy_workflow, metalr, run

# The tiny config, no PDF where LaTeX is absent (Snakemake and dvc.yaml must agree on the PDF stage), and a
# layer over them that tests write values into.
TINY_FILES = (["tests/data/tiny.yaml"] + ([] if latex_available() else ["tests/data/no-latex.yaml"])
              + ["tests/data/tiny-layer.yaml"])
TINY = ["--configfile", *TINY_FILES]  # Snakemake's: one option, the files in order (a second one replaces it)
TINY_METALR = [arg for path in TINY_FILES for arg in ("--configfile", path)]  # metalr's: the option repeated


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The tiny config's whole workflow, run by Snakemake in a fresh copy that is a git and DVC repository
    whose dvc.yaml is generated for the same config files, so Snakemake's last step records for DVC."""
    root = copy_workflow(tmp_path_factory.mktemp("tiny"))
    run(["git", "init", "-q"], root)
    metalr(root, "dvc-yaml", *TINY_METALR)
    result = run([SNAKEMAKE, "--cores", "2", "--printshellcmds", *TINY], root)
    return root, result


TUNED_FILES = ["tests/data/tiny.yaml", "tests/data/no-latex.yaml", "tests/data/tiny-tune.yaml"]


@pytest.fixture(scope="session")
def tuned(tmp_path_factory):
    """The tiny config with a tune block (tests/data/tiny-tune.yaml), run like ``tiny``; also its dry-run plan."""
    from tests.integration.workflow_helpers import planned_jobs

    root = copy_workflow(tmp_path_factory.mktemp("tuned"))
    run(["git", "init", "-q"], root)
    metalr(root, "dvc-yaml", *(arg for path in TUNED_FILES for arg in ("--configfile", path)))
    plan = planned_jobs(root, "--configfile", *TUNED_FILES)
    result = run([SNAKEMAKE, "--cores", "2", "--configfile", *TUNED_FILES], root)
    return root, plan, result
