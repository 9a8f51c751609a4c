"""`metalr scaling`: the sweep, the memory measure (MAML grows with inner steps, iMAML does not), figure and macros."""
from __future__ import annotations

import copy

from metalr import config as config_mod
from metalr import io, scaling
from metalr.report import scaling as scaling_report


def tiny_config() -> dict:
    cfg = copy.deepcopy(config_mod.load([config_mod.DEFAULT_CONFIG]))
    cfg["analysis"]["scaling"].update(filters=2, queries=1, algorithms=["maml", "imaml"], inner_steps=[1, 4],
                                      shots=[1], task_batch=[1, 2], repeats=1, warmup=0,
                                      base={"inner_steps": 1, "shots": 1, "task_batch": 1})
    return cfg


def test_one_axis_is_swept_at_a_time():
    scfg = tiny_config()["analysis"]["scaling"]
    cases = scaling.cases(scfg)
    assert len(cases) == 2 * (2 + 1 + 2)
    for axis, case in cases:
        for other in set(scaling.AXES) - {axis}:
            assert getattr(case, other) == scfg["base"][other]


def test_memory_grows_with_inner_steps_for_maml_but_not_for_imaml(tmp_path):
    report = scaling.run(tiny_config(), "cpu", tmp_path / "scaling.json", progress=lambda line: None)
    assert io.read_json(tmp_path / "scaling.json") == report
    summary = report["summary"]
    assert summary["maml"]["memory_ratio"] > 1.5  # every inner step's graph is kept
    assert 0.9 < summary["imaml"]["memory_ratio"] < 1.1  # the implicit gradient needs the solution only
    assert all(r["peak_memory_mib"] > 0 and r["iteration_s"] > 0 for r in report["results"])

    written = scaling_report.write(tmp_path / "scaling.json", tmp_path / "generated")
    assert [p.name for p in written] == ["scaling.pdf", "scaling-macros.tex"]
    macros = (tmp_path / "generated" / "scaling-macros.tex").read_text()
    assert "\\newcommand{\\ScalingMamlMemoryRatio}" in macros and "\\newcommand{\\ScalingStepsHigh}{4}" in macros
    assert written[0].read_bytes().startswith(b"%PDF")


def test_the_study_runs_on_the_configured_backbone(tmp_path):
    cfg = tiny_config()
    cfg["analysis"]["scaling"].update(backbone="resnet12", algorithms=["anil"], inner_steps=[1], task_batch=[1])
    report = scaling.run(cfg, "cpu", tmp_path / "scaling.json", progress=lambda line: None)
    assert {r["case"]["backbone"] for r in report["results"]} == {"resnet12"}
    assert all(r["peak_memory_mib"] > 0 for r in report["results"])


def test_macros_of_algorithms_left_out_of_the_study_read_not_available():
    report = {"device": {"device": "cpu"}, "summary": {"maml": {
        "inner_steps_low": 1, "inner_steps_high": 4, "time_ratio": 3.0, "memory_ratio": 2.5}}}
    macros = scaling_report.scaling_macros(report)
    assert "\\newcommand{\\ScalingMamlTimeRatio}{3.0}" in macros
    assert "\\newcommand{\\ScalingAnilMemoryRatio}{n/a}" in macros
