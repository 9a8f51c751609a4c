"""The paper's Table 3 end to end: models trained on glyphs, evaluated on real Omniglot test tasks (from a
mirror folder, as in CI), through Snakemake to the report, with a space and non-ASCII characters in every
path: the repository, the interpreter's environment, the config file, the data folder and the mirror."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

from metalr.config import REPO_ROOT
from metalr.io import read_json
from tests.integration.workflow_helpers import copy_workflow, job_counts, run

MIRROR = REPO_ROOT.parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (MIRROR / "omniglot").is_dir(),
                                reason=f"the Omniglot mirror {MIRROR / 'omniglot'} is absent")
CONFIG = "cönfig dir/cross x.yaml"


@pytest.fixture(scope="module")
def cross_workflow(tmp_path_factory):
    base = tmp_path_factory.mktemp("cross")
    root = copy_workflow(base / "répo with space")
    shutil.copytree(MIRROR / "omniglot", root / "mïrror dir" / "omniglot")
    # the environment under a path with a space: Snakemake runs every job with its own interpreter
    environment = base / "vénv dir"
    environment.symlink_to(Path(sys.prefix), target_is_directory=True)
    python = str(environment / "bin" / "python")
    tiny = yaml.safe_load((root / "tests" / "data" / "tiny.yaml").read_text())
    tiny.update(experiment="cross",
                data={"root": "dätä dir", "downloads": "dätä dir/räw", "mirror": ["mïrror dir"]},
                cross_domain=[{"train": "glyphs", "test": ["omniglot"], "ways": [5], "shots": [1]}])
    tiny["report"] = {**tiny.get("report", {}), "latex": False}
    (root / CONFIG).parent.mkdir()
    (root / CONFIG).write_text(yaml.safe_dump(tiny, allow_unicode=True), encoding="utf-8")
    snakemake = [python, "-m", "snakemake", "--cores", "2", "--configfile", CONFIG]
    plan = job_counts(run([*snakemake[:3], "-n", *snakemake[3:]], root).stdout)
    result = run([*snakemake, "--printshellcmds"], root)
    return root, plan, result, snakemake


def test_the_plan_adds_the_test_dataset_its_task_list_and_one_evaluation_per_method(cross_workflow):
    _, plan, _, _ = cross_workflow
    assert plan["data"] == 2 and plan["tasks"] == 1 and plan["tasks_cross_domain"] == 1
    assert plan["train"] == plan["evaluate"] == plan["evaluate_cross_domain"] == 4


def test_every_path_with_a_space_or_non_ascii_characters_worked(cross_workflow):
    root, _, result, snakemake = cross_workflow
    # every job ran `"$METALR_PYTHON" -m metalr`: the interpreter that ran Snakemake, whose path has the space
    assert result.stdout.count('"$METALR_PYTHON" -m metalr') + result.stderr.count('"$METALR_PYTHON" -m metalr') > 10
    executable = run([snakemake[0], "-c", "import sys; print(sys.executable)"], root).stdout.strip()
    assert "vénv dir" in executable
    assert (root / "dätä dir" / "omniglot" / "manifest.json").is_file()
    assert (root / "dätä dir" / "glyphs" / "manifest.json").is_file()
    assert not (root / "data").exists()


def test_cross_domain_metrics_use_the_omniglot_task_list_at_the_training_resolution(cross_workflow):
    root, _, _, _ = cross_workflow
    files = sorted((root / "results" / "cross" / "cross_domain" / "omniglot" / "glyphs").rglob("*.json"))
    assert len(files) == 4
    tasks = read_json(root / "results" / "cross" / "tasks" / "omniglot" / "5w1s-unseen-by-glyphs.json")
    assert tasks["unseen_by"]["dataset"] == "glyphs" and tasks["unseen_by"]["classes_with_wordnet_id"] == 0
    for path in files:
        metrics = read_json(path)
        assert metrics["run"]["dataset"] == "glyphs" and metrics["evaluation"]["dataset"] == "omniglot"
        assert metrics["task_list"]["sha256"] == tasks["sha256"]
        assert metrics["evaluation"]["image_shape"] == metrics["evaluation"]["resized_to"] == [1, 28, 28]
        assert metrics["accuracy"]["n_tasks"] == 10


def test_the_report_reads_the_cross_domain_results_and_a_rerun_does_nothing(cross_workflow):
    root, _, _, snakemake = cross_workflow
    summary = (root / "paper" / "generated" / "cross" / "summary.csv").read_text()
    assert summary.count(",omniglot,") >= 4
    assert job_counts(run([*snakemake[:3], "-n", *snakemake[3:]], root).stdout) == {}
