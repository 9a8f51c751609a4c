"""The analyses' report piece: cost table, step-size figure (or placeholder), macros, experiment checks."""
from __future__ import annotations

import re

import pytest

from metalr import config as config_mod
from metalr import io
from metalr.analysis import cost
from metalr.report.analyses import ANALYSIS_OUTPUTS, build_analyses, render_cost
from tests.unit.appendix_inputs import BENCH, analysis_config, write_analysis_inputs


def rate_log(rule: str, experiment: str = "unit") -> dict:
    return {"run": {"experiment": experiment, "dataset": "glyphs", "ways": 5, "shots": 1, "algorithm": "maml",
                    "rule": rule, "seed": 1, "run_id": f"glyphs/5w1s/maml/{rule}/seed1"},
            "inner_steps": 2, "iterations": [10, 20], "keys": ["conv0.weight", "head.weight"],
            "rates": [[[0.4, 0.4], [0.4, 0.4]], [[0.41, 0.39], [0.5, 0.3]]]}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("analyses")
    cfg = analysis_config()
    write_analysis_inputs(folder, cfg)
    return cfg, folder


def test_every_output_is_written_with_numbers_from_the_inputs(inputs, tmp_path):
    cfg, folder = inputs
    rates = []
    for rule in ("fixed", "lslr"):
        io.write_json(folder / f"{rule}.json", rate_log(rule))
        rates.append(folder / f"{rule}.json")
    written = build_analyses(cfg, folder / "fidelity.json", folder / "cost.json", rates, tmp_path)
    assert sorted(p.name for p in written) == sorted(ANALYSIS_OUTPUTS)
    for name in ("fidelity.pdf", "stepsizes.pdf"):
        assert (tmp_path / name).read_bytes()[:4] == b"%PDF"
    macros = (tmp_path / "analyses_macros.tex").read_text()
    names = re.findall(r"\\newcommand\{\\([A-Za-z]+)\}", macros)
    assert len(names) == len(set(names)) > 20
    assert r"\newcommand{\CostCases}{2}" in macros and r"\newcommand{\StepsizeRuns}{1}" in macros
    assert r"\newcommand{\FidelityStepsMax}{2}" in macros and r"\newcommand{\OuterAdaptation}{none}" in macros


def test_cost_table_rows_and_missing_reference():
    table = " ".join(render_cost(BENCH, "unit").split())  # rows and caption span source lines
    # GFLOP 12.5 in 0.25 s = 50 GFLOP/s, 0.25 of the 200 GFLOP/s matmul peak
    assert re.search(r"MAML & fixed & 0\.25 \[0\.125--0\.5\] & 16 & 12\.5 & 0\.25 & 512 & 2 & 1\.6 \\\\", table)
    assert re.search(r"Reptile & [^&]+ & 0\.125 \[[^]]+\] & 32 & 4 & 0\.16 & 512 & -- & -- \\\\", table)
    assert r"compute.cpu\_allocator: retain" in table
    assert "Conv-4 with widths 16--16--16--16" in table and "200 GFLOP/s on 2048 $\\times$ 2048 matrices" in table
    assert "no cases" in render_cost({**BENCH, "results": []}, "unit")


def test_placeholder_without_adaptive_runs_and_foreign_experiment_refused(inputs, tmp_path):
    cfg, folder = inputs
    io.write_json(folder / "only_fixed.json", rate_log("fixed"))
    build_analyses(cfg, folder / "fidelity.json", folder / "cost.json", [folder / "only_fixed.json"], tmp_path)
    assert (tmp_path / "stepsizes.pdf").read_bytes()[:4] == b"%PDF"
    assert r"\newcommand{\StepsizeRuns}{0}" in (tmp_path / "analyses_macros.tex").read_text()
    io.write_json(folder / "other.json", rate_log("lslr", experiment="other"))
    with pytest.raises(ValueError, match="experiment 'other'"):
        build_analyses(cfg, folder / "fidelity.json", folder / "cost.json", [folder / "other.json"], tmp_path / "x")


def test_cost_cases_skip_pairs_the_validator_refuses():
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG])
    pairs = {(c.algorithm, c.rule) for c in cost.cases(cfg)}
    assert len(pairs) == 5 * 7 - 2 * 3 and ("reptile", "meta-sgd") not in pairs and ("reptile", "mlplr") in pairs
    assert {c.shots for c in cost.cases(cfg)} == set(cfg["analysis"]["cost"]["shots"])
    cfg["analysis"]["cost"]["backbone"] = "resnet12"
    assert {c.backbone for c in cost.cases(cfg)} == {"resnet12"}
