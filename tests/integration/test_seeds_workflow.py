"""Several seeds end to end: the tiny config with seeds [1, 2], through Snakemake, to the report's
across-seed columns, the verdict of MLPLR against the fixed rule and the within-seed tests."""
from __future__ import annotations

import csv

import pytest
import yaml

from metalr.io import read_json
from tests.integration.workflow_helpers import SNAKEMAKE, copy_workflow, run

pytestmark = pytest.mark.slow
REPORT = ("cells.csv", "paired.csv", "paired_within_seed.csv", "paired.tex", "tables.tex", "macros.tex")


@pytest.fixture(scope="module")
def seeds_workflow(tmp_path_factory):
    """MAML with the fixed rule and MLPLR at two seeds; only the report's files are asked for (no analyses)."""
    root = copy_workflow(tmp_path_factory.mktemp("seeds"))
    tiny = yaml.safe_load((root / "tests" / "data" / "tiny.yaml").read_text())
    tiny.update(experiment="seeds")
    tiny["grid"] = {**tiny["grid"], "algorithms": ["maml"], "seeds": [1, 2]}
    tiny["report"] = {**tiny.get("report", {}), "latex": False, "bootstrap": {"resamples": 500, "seed": 0}}
    (root / "seeds.yaml").write_text(yaml.safe_dump(tiny))
    # the targets before --configfile, which takes every path after it
    run([SNAKEMAKE, *(f"paper/generated/seeds/{name}" for name in REPORT), "--cores", "2",
         "--configfile", "seeds.yaml"], root)
    return root


def rows(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_two_seeds_reach_the_verdict_and_the_tables(seeds_workflow):
    gen = seeds_workflow / "paper" / "generated" / "seeds"
    cells = rows(gen / "cells.csv")
    assert [(c["rule"], c["n_seeds"]) for c in cells] == [("fixed", "2"), ("mlplr", "2")]
    assert all(float(c["seed_sd"]) >= 0 for c in cells)
    (verdict,) = rows(gen / "paired.csv")
    assert (verdict["rule"], verdict["seeds"], verdict["n_tasks"]) == ("mlplr", "1 2", "10")
    for key in ("seed_low", "seed_high", "boot_low", "boot_high", "poi_low", "poi_high"):
        float(verdict[key])  # defined with two seeds
    assert 0 <= float(verdict["poi"]) <= 1 and verdict["verdict"] in ("better", "worse", "no difference shown")
    assert float(verdict["seed_low"]) <= float(verdict["mean"]) <= float(verdict["seed_high"])
    # the test classes are those of the task list; the class-level scores come from every metrics file
    tasks = read_json(seeds_workflow / "results" / "seeds" / "tasks" / "glyphs" / "5w1s.json")
    assert int(verdict["n_classes"]) == len({c for e in tasks["episodes"] for c in e["classes"]})
    assert int(verdict["distinct_tasks"]) == tasks["distinct_tasks"]
    within = rows(gen / "paired_within_seed.csv")
    assert [w["seed"] for w in within] == ["1", "2"]
    # the verdict's mean is the mean of the seeds' differences
    assert float(verdict["mean"]) == pytest.approx(sum(float(w["mean"]) for w in within) / 2)
    table = (gen / "tables.tex").read_text()
    assert "standard deviation of the seed means" in table and "(n/a)" not in table
    assert "\\label{tab:verdict}" in (gen / "paired.tex").read_text()
    for path in (seeds_workflow / "results" / "seeds" / "metrics").rglob("*.json"):
        metrics = read_json(path)
        assert len(metrics["per_task_class_accuracy"]) == 10 and metrics["task_list"]["distinct_tasks"] >= 1
