"""Tuning on meta-validation end to end: the tiny config with a tune block, through Snakemake (each trial a
job of its own, the chosen values a declared input of the tuned runs) and DVC (the same stages), to the
appendix's tuning section."""
from __future__ import annotations

import csv

import pytest
import yaml

from metalr.io import read_json, sha256_file
from metalr.train.checkpoint import read_torch
from tests.integration.conftest import TUNED_FILES
from tests.integration.workflow_helpers import dvc_changed, dvc_repro, job_counts, metalr, planned_jobs

pytestmark = pytest.mark.slow
TUNED = [("fixed", "fixed"), ("mlplr", "mlplr")]  # (run rule, tuned rule); the -untuned runs read no tuning


@pytest.fixture(scope="module")
def tuned_workflow(tuned):
    return tuned


def cell(root, *parts):
    return root.joinpath("results", "tuned", *parts)


def test_the_plan_has_a_job_per_trial_and_a_tune_job_per_rule(tuned_workflow):
    _, plan, result = tuned_workflow
    assert (plan["trial"], plan["tune"], plan["val_tasks"], plan["tuning_report"]) == (4, 2, 1, 1)
    assert plan["train"] == 4  # fixed, mlplr (tuned) and their untuned baselines
    assert job_counts(result.stdout + result.stderr) == plan


def test_tuned_runs_train_with_the_chosen_values_and_record_their_hash(tuned_workflow):
    root, _, _ = tuned_workflow
    for rule, tuned in TUNED:
        chosen_path = cell(root, "tuning", "glyphs", "5w1s", "maml", tuned, "chosen.json")
        chosen = read_json(chosen_path)
        trials = [read_json(cell(root, "tuning", "glyphs", "5w1s", "maml", tuned, f"trial{k}.json")) for k in (0, 1)]
        best = max(trials, key=lambda t: (t["validation"]["accuracy"]["mean"], -t["trial"]))
        assert (chosen["trial"], chosen["settings"]) == (best["trial"], best["settings"])
        assert [t["sha256"] for t in chosen["trials"]] == [
            sha256_file(cell(root, "tuning", "glyphs", "5w1s", "maml", tuned, f"trial{k}.json")) for k in (0, 1)]
        model = read_torch(cell(root, "models", "glyphs", "5w1s", "maml", rule, "seed1", "model.pt"), "retrain")
        assert model["tuning"]["sha256"] == chosen["sha256"] and model["tuning"]["settings"] == chosen["settings"]
        metrics = read_json(cell(root, "metrics", "glyphs", "5w1s", "maml", rule, "seed1.json"))
        assert metrics["tuning"]["sha256"] == chosen["sha256"]
        untuned = read_torch(cell(root, "models", "glyphs", "5w1s", "maml", f"{rule}-untuned", "seed1", "model.pt"),
                             "retrain")
        assert untuned["tuning"] is None
        # best_val: the chosen iterate is one of the validated ones, and the curve is in the training log
        log = read_json(cell(root, "models", "glyphs", "5w1s", "maml", rule, "seed1", "train_log.json"))
        assert log["validation"]["iterations"] == [2, 4]
        assert log["selection"]["iteration"] in log["validation"]["iterations"]


def test_the_val_task_list_comes_from_the_val_split_and_records_no_test_data(tuned_workflow):
    root, _, _ = tuned_workflow
    tasks = read_json(cell(root, "tasks", "val", "glyphs", "5w1s.json"))
    assert (tasks["split"], tasks["tasks"]) == ("val", 6)
    assert sorted(tasks["split_sha256"]) == ["val_images.npy", "val_labels.npy"]
    assert "dataset_manifest_sha256" not in tasks


def test_the_appendix_has_the_tuning_section(tuned_workflow):
    root, _, _ = tuned_workflow
    gen = root / "paper" / "generated" / "tuned"
    assert "\\newcommand{\\TuningSection}{\\input{sections/tuning}}" in (gen / "macros.tex").read_text()
    table = (gen / "tuning.tex").read_text()
    assert "\\label{tab:spaces}" in table and "\\label{tab:chosen}" in table
    assert (gen / "sensitivity.pdf").read_bytes()[:4] == b"%PDF"
    assert "\\newcommand{\\TuneTrials}{2}" in (gen / "tuning-macros.tex").read_text()


def test_dvc_has_the_same_stages_and_nothing_to_rerun(tuned_workflow):
    root, _, _ = tuned_workflow
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    trials = sorted(name for name in stages if name.startswith("trial_"))
    assert trials == [f"trial_glyphs_5w1s_maml_{rule}_trial{k}" for rule in ("fixed", "mlplr") for k in (0, 1)]
    train = stages["train_glyphs_5w1s_maml_mlplr_seed1"]
    assert "results/tuned/tuning/glyphs/5w1s/maml/mlplr/chosen.json" in train["deps"]
    assert "--tuned results/tuned/tuning/glyphs/5w1s/maml/mlplr/chosen.json" in train["cmd"]
    assert not any("chosen.json" in dep for dep in stages["train_glyphs_5w1s_maml_mlplr-untuned_seed1"]["deps"])
    assert dvc_changed(root) == set() and dvc_repro(root) == set()


def test_one_more_trial_runs_that_trial_only_and_what_depends_on_it(tuned_workflow, tmp_path):
    """Trial k is the k-th point of the seeded sequence whatever the count: the earlier trials are kept."""
    root, _, _ = tuned_workflow
    (tmp_path / "more.yaml").write_text(yaml.safe_dump({"tune": {"trials": 3}}))
    plan = planned_jobs(root, "--configfile", *TUNED_FILES, str(tmp_path / "more.yaml"))
    assert plan["trial"] == 2 and plan["tune"] == 2  # trial 2 of each rule; both picks are made again
    assert "val_tasks" not in plan and "data" not in plan


def test_the_verdicts_pair_tuned_with_tuned_and_untuned_with_untuned(tuned_workflow):
    root, _, _ = tuned_workflow
    with (root / "paper" / "generated" / "tuned" / "paired.csv").open() as handle:
        pairs = [(row["rule"], row["control"]) for row in csv.DictReader(handle)]
    assert pairs == [("mlplr", "fixed"), ("mlplr-untuned", "fixed-untuned")]
    ledger = (root / "paper" / "generated" / "tuned" / "choices.tex").read_text()
    assert ledger.count("tuned on meta-val") == 4  # fixed.lr; MLPLR's lr_max, lr_min and divergence


def test_results_markdown_is_generated_from_the_report_and_the_tuning(tuned_workflow, tmp_path):
    root, _, _ = tuned_workflow
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:tuned:start -->\nold\n<!-- results:tuned:end -->\noutro\n")
    (tmp_path / "time.txt").write_text("\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03.50\n")
    metalr(root, "results-md", *(arg for path in TUNED_FILES for arg in ("--configfile", path)),
           "--time-file", str(tmp_path / "time.txt"), "--out", str(tmp_path / "tuned.md"), "--readme", str(readme))
    text = readme.read_text()
    assert text.startswith("intro\n<!-- results:tuned:start -->\nGenerated by") and text.endswith(
        "<!-- results:tuned:end -->\noutro\n") and "old" not in text
    assert "**62.1 min**" in text
    with (root / "paper" / "generated" / "tuned" / "paired.csv").open() as handle:
        verdicts = list(csv.DictReader(handle))
    for row in verdicts:
        assert f"| {100 * float(row['mean']):+.2f} |" in text
    for rule in ("fixed", "mlplr"):
        chosen = read_json(cell(root, "tuning", "glyphs", "5w1s", "maml", rule, "chosen.json"))
        assert f"| {rule} | {chosen['trial']} |" in text
    # without the markers, nothing is written into the file
    readme.write_text("no markers\n")
    result = metalr(root, "results-md", *(arg for path in TUNED_FILES for arg in ("--configfile", path)),
                    "--out", str(tmp_path / "again.md"), "--readme", str(readme), check=False)
    assert result.returncode != 0 and "needs one line <!-- results:tuned:start -->" in result.stderr
    assert readme.read_text() == "no markers\n"
