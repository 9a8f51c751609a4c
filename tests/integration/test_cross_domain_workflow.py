"""The paper's Table 3 end to end: models trained on glyphs, evaluated on real Omniglot test tasks
(from the mirror beside the repository, as in CI), through Snakemake to the report."""
from __future__ import annotations

import pytest
import yaml

from metalr.config import REPO_ROOT
from metalr.io import read_json
from tests.integration.workflow_helpers import copy_workflow, job_counts, planned_jobs, run

MIRROR = REPO_ROOT.parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (MIRROR / "omniglot").is_dir(),
                                reason=f"the Omniglot mirror {MIRROR / 'omniglot'} is absent")


@pytest.fixture(scope="module")
def cross_workflow(tmp_path_factory):
    root = copy_workflow(tmp_path_factory.mktemp("cross"))
    tiny = yaml.safe_load((root / "tests" / "data" / "tiny.yaml").read_text())
    tiny.update(experiment="cross",
                data={"mirror": [str(MIRROR)]},
                cross_domain=[{"train": "glyphs", "test": ["omniglot"], "ways": [5], "shots": [1]}])
    tiny["report"] = {**tiny.get("report", {}), "latex": False}
    (root / "cross.yaml").write_text(yaml.safe_dump(tiny))
    plan = job_counts(run(["snakemake", "-n", "--cores", "1", "--configfile", "cross.yaml"], root).stdout)
    run(["snakemake", "--cores", "2", "--configfile", "cross.yaml"], root)
    return root, plan


def test_the_plan_adds_the_test_dataset_its_task_list_and_one_evaluation_per_method(cross_workflow):
    _, plan = cross_workflow
    assert plan["data"] == 2 and plan["tasks"] == 1 and plan["tasks_cross_domain"] == 1
    assert plan["train"] == plan["evaluate"] == plan["evaluate_cross_domain"] == 4


def test_cross_domain_metrics_use_the_omniglot_task_list_at_the_training_resolution(cross_workflow):
    root, _ = cross_workflow
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
    root, _ = cross_workflow
    summary = (root / "paper" / "generated" / "cross" / "summary.csv").read_text()
    assert summary.count(",omniglot,") >= 4
    assert planned_jobs(root, "--configfile", "cross.yaml") == {}
