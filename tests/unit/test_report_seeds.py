"""The report over several seeds: accuracy tables with the spread across seeds, the verdict of each rule
against the fixed rule (paired.csv), the within-seed tests, cells.csv and their macros; n/a with one seed."""
from __future__ import annotations

import io as text_io

import numpy as np
import pandas as pd
import pytest
import yaml

from metalr.io import write_json
from tests.unit.test_report import TASK_HASH, metrics, read_macros, report, run_fields, table_rows

N_TASKS = 200
CELL = "GlyphsFiveWayOneShotMamlMlplr"


def write_seeds(root, seeds, gain, rng_seed=0):
    """maml fixed and maml+MLPLR at glyphs 5-way 1-shot: per seed a fixed network, and an MLPLR network
    above it on every task, by 0.7, 1.0, 1.3, ... times ``gain`` for seeds 1, 2, 3, ..."""
    rng = np.random.default_rng(rng_seed)
    difficulty = rng.uniform(0.3, 0.8, N_TASKS)
    paths = []
    for seed in seeds:
        fixed = np.clip(difficulty + rng.normal(0, 0.02, N_TASKS), 0, 1)
        better = np.clip(fixed + gain * (0.7 + 0.3 * (seed - 1)), 0, 1)
        for rule, scores in (("fixed", fixed), ("mlplr", better)):
            run = run_fields("maml", rule, 1, seed=seed)
            path = root / "metrics" / f"{rule}-{seed}.json"
            write_json(path, metrics(run, float(np.mean(scores)), 0.01, TASK_HASH[1], n_tasks=N_TASKS, scores=scores))
            paths.append(path)
    return paths


def built(root, seeds, gain=0.03):
    out = root / "generated"
    report(write_seeds(root, seeds, gain), [], out, root)
    return out


def csv(out, name) -> pd.DataFrame:
    return pd.read_csv(text_io.StringIO((out / name).read_text()), keep_default_na=False)


def test_three_seeds_give_the_spread_and_a_verdict(tmp_path):
    out = built(tmp_path, [1, 2, 3])
    cells = csv(out, "cells.csv")
    assert cells["n_seeds"].tolist() == [3, 3] and all(float(v) > 0 for v in cells["seed_sd"])
    verdict = csv(out, "paired.csv").iloc[0]
    assert (verdict["rule"], verdict["n_seeds"], verdict["seeds"], verdict["n_tasks"]) == ("mlplr", 3, "1 2 3", N_TASKS)
    assert float(verdict["mean"]) == pytest.approx(0.03, abs=0.002)
    assert 0 < float(verdict["seed_low"]) < float(verdict["seed_high"])
    assert 0 < float(verdict["boot_low"]) < float(verdict["boot_high"])
    assert float(verdict["poi"]) > 0.5 and verdict["verdict"] == "better"
    within = csv(out, "paired_within_seed.csv")
    assert within["seed"].tolist() == [1, 2, 3] and all(float(p) < 1e-6 for p in within["p_value"])
    m = read_macros(out / "macros.tex")
    assert (m["NumPairedMlplr"], m["NumVerdictBetterMlplr"], m["NumVerdictOneSeedMlplr"]) == ("1", "1", "0")
    assert m["NumWithinSeedMlplr"] == "3" and m["NumWithinSeedBetterMlplr"] == "3"
    assert m["Diff" + CELL] == f"{100 * float(verdict['mean']):.2f}"
    assert m["DiffSeedLow" + CELL] != "n/a" and m["Poi" + CELL] == f"{float(verdict['poi']):.2f}"
    assert m["Verdict" + CELL] == "better" and m["NumSeeds"] == "3" and m["BootResamples"] == "10000"
    rows = table_rows((out / "tables.tex").read_text())
    assert rows["MAML"][0].endswith(f"({m['SeedSdGlyphsFiveWayOneShotMamlFixed']})")
    tex = (out / "paired.tex").read_text()
    assert "\\label{tab:verdict}" in tex and "\\label{tab:paired}" in tex and "within one seed" in tex


def test_no_gain_shows_no_difference(tmp_path):
    verdict = csv(built(tmp_path, [1, 2, 3], gain=0.0), "paired.csv").iloc[0]
    assert float(verdict["mean"]) == 0.0 and float(verdict["poi"]) == 0.5
    assert verdict["verdict"] == "no difference shown"


def test_one_seed_says_n_a_instead_of_inventing(tmp_path):
    out = built(tmp_path, [1])
    assert csv(out, "cells.csv")["seed_sd"].tolist() == ["n/a", "n/a"]
    verdict = csv(out, "paired.csv").iloc[0]
    for key in ("seed_sd", "seed_ci95", "seed_low", "seed_high", "boot_low", "boot_high", "poi", "poi_low", "poi_high",
                "n_classes"):
        assert verdict[key] == "n/a", key
    assert verdict["verdict"] == "n/a (one seed)"
    assert float(verdict["mean"]) == pytest.approx(0.021)  # seed 1: 0.7 x 0.03
    m = read_macros(out / "macros.tex")
    assert m["NumVerdictOneSeedMlplr"] == "1" and m["MeanPoiMlplr"] == "n/a" and m["Poi" + CELL] == "n/a"
    rows = table_rows((out / "tables.tex").read_text())
    assert "(" not in rows["MAML"][0]  # no spread column when no cell has several seeds
    # the within-seed test still exists: two networks compared on the same tasks
    assert csv(out, "paired_within_seed.csv")["seed"].tolist() == [1]


def test_repeated_tasks_are_named_in_the_caption_and_the_macros(tmp_path):
    paths = []
    for rule in ("fixed", "mlplr"):
        run = run_fields("maml", rule, 1)
        path = tmp_path / "metrics" / f"{rule}.json"
        write_json(path, metrics(run, 0.5, 0.01, TASK_HASH[1], n_tasks=40, distinct=9))
        paths.append(path)
    out = tmp_path / "generated"
    report(paths, [], out, tmp_path)
    assert "40 tasks of which only 9 distinct" in (out / "tables.tex").read_text()
    m = read_macros(out / "macros.tex")
    assert m["NumDistinctTestTasks"] == "9" and "9 distinct of 40" in m["TaskRepeats"]
    assert "distinct_tasks" in csv(out, "cells.csv")
    assert csv(out, "summary.csv")["task_list_distinct_tasks"].tolist() == [9, 9]
    unique = tmp_path / "unique"
    report(write_seeds(unique, [1], 0.0), [], unique / "g", unique)
    assert read_macros(unique / "g" / "macros.tex")["TaskRepeats"] == ""


@pytest.mark.parametrize("bootstrap,expected", [
    ({"resamples": 10}, "report.bootstrap.resamples: 10 is less than the minimum of 100"),
    ({"seed": -1}, "report.bootstrap.seed: -1 is less than the minimum of 0"),
    ({"reps": 5}, "report.bootstrap: unknown key(s) ['reps']"),
])
def test_bootstrap_settings_are_validated(tmp_path, bootstrap, expected):
    from metalr import config as config_mod

    override = tmp_path / "bootstrap.yaml"
    override.write_text(yaml.safe_dump({"report": {"bootstrap": bootstrap}}))
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.load([config_mod.DEFAULT_CONFIG, override])
    assert expected in str(err.value)
