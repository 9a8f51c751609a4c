"""Report stage: synthetic metrics + training logs -> table, macros, figures, appendix PDF."""
from __future__ import annotations

import re
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

try:
    import metalr  # noqa: F401
except ImportError:  # running without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from metalr import config as config_mod
from metalr import provenance, stages
from metalr.config import DEFAULT_CONFIG, Run
from metalr.io import write_json
from metalr.report import aggregate, figures, latex, pdf, tables
from metalr.report.build import OUTPUTS, build_report
from metalr.report.macros import evaluation_steps_text, task_list_digest
from tests.unit.appendix_inputs import generated_with_analyses

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = "quick_test"
TASK_HASH = {1: "a" * 56 + "11111111", 5: "b" * 56 + "55555555"}
ALGS = ("anil", "maml", "fomaml")
RULES = ("fixed", "mlplr")
# (algorithm, rule, shots) -> (mean, ci95) as fractions; anil+mlplr 5-shot is missing on purpose
ACC = {
    ("anil", "fixed", 1): (0.8, 0.01),
    ("anil", "mlplr", 1): (0.81234, 0.0123),
    ("maml", "fixed", 1): (0.85, 0.011),
    ("maml", "mlplr", 1): (0.87345, 0.011),  # rounds half up to 87.35
    ("fomaml", "fixed", 1): (0.84, 0.012),
    ("fomaml", "mlplr", 1): (0.8499, 0.0105),
    ("anil", "fixed", 5): (0.93, 0.005),
    ("maml", "fixed", 5): (0.95, 0.004),
    ("maml", "mlplr", 5): (0.96, 0.004),
    ("fomaml", "fixed", 5): (0.94, 0.005),
    ("fomaml", "mlplr", 5): (0.971, 0.003),
}
TRAIN_ITERS, TASK_BATCH, TRAIN_STEPS, EVAL_STEPS = 100, 4, 5, 10
FIXED_LR = 0.4


def run_fields(alg, rule, shots, dataset="glyphs", seed=1, experiment=EXPERIMENT, ways=5):
    return {"experiment": experiment, "dataset": dataset, "algorithm": alg, "rule": rule, "ways": ways,
            "shots": shots, "seed": seed, "run_id": f"{dataset}/{ways}w{shots}s/{alg}-{rule}-seed{seed}"}


def per_task(run, mean, n_tasks, test_dataset=None):
    """Deterministic per-task accuracies around `mean` (seeded by the run and test set)."""
    rng = np.random.default_rng(zlib.crc32(f"{run['run_id']}>{test_dataset}".encode()))
    return list(np.clip(mean + rng.normal(0.0, 0.1, n_tasks), 0.0, 1.0))


def task_classes(sha, n_tasks, ways, n_classes=20):
    """The classes of each task of the task list with hash `sha` (the same for every run scored on it)."""
    rng = np.random.default_rng(zlib.crc32(sha.encode()))
    return [sorted(int(c) for c in rng.choice(n_classes, ways, replace=False)) for _ in range(n_tasks)]


def metrics(run, mean, ci, sha, n_tasks=600, lam=(0.5, 1.5), test_dataset=None, scores=None, distinct=None):
    lo, hi = lam if run["rule"] == "mlplr" else (FIXED_LR, FIXED_LR)
    scores = per_task(run, mean, n_tasks, test_dataset) if scores is None else list(scores)
    data = {
        "run": run,
        "accuracy": {"mean": mean, "ci95": ci, "std": 0.14, "n_tasks": n_tasks},
        "per_task_accuracy": scores,
        # every class of a task scored at the task's accuracy
        "per_task_classes": task_classes(sha, len(scores), run["ways"]),
        "per_task_class_accuracy": [[float(a)] * run["ways"] for a in scores],
        "inner_steps": EVAL_STEPS,
        "task_list": {"path": f"results/x/tasks/{run['dataset']}-5w{run['shots']}s-q15.json", "sha256": sha,
                      "distinct_tasks": n_tasks if distinct is None else distinct},
        "lambda": {"mean_per_step": list(np.linspace(lo, hi, EVAL_STEPS)),
                   "min_per_step": [lo] * EVAL_STEPS, "max_per_step": [hi] * EVAL_STEPS},
        "model": {"path": "m.pt", "sha256": "0" * 64},
        "config_digest": evaluation_digest(run, test_dataset),
    }
    if test_dataset is not None:
        data["evaluation"] = {"dataset": test_dataset, "ways": run["ways"], "shots": run["shots"], "split": "test"}
    return data


def evaluation_digest(run: dict, test_dataset: str | None) -> str:
    """The config digest an evaluation of ``run`` has under the test experiment's config (config/config.yaml
    naming the run's experiment), as the evaluation stage writes it."""
    cfg = config_mod.merge(config_mod.load([DEFAULT_CONFIG]), {"experiment": run["experiment"]})
    trained = Run(run["dataset"], int(run["ways"]), int(run["shots"]), run["algorithm"], run["rule"], int(run["seed"]))
    stage, job = stages.evaluation_job(trained, test_dataset or run["dataset"])
    return stages.settings_digest(stage, cfg, job)


def config_file(folder: Path, experiment=EXPERIMENT, extra: str = "") -> list[Path]:
    """The layered config files of a test experiment: config/config.yaml, then one naming it."""
    path = folder / "experiment.yaml"
    path.write_text(f"experiment: {experiment}  # [ours] the unit tests' experiment\n{extra}")
    return [DEFAULT_CONFIG, path]


def report(metrics_paths, log_dirs, out: Path, folder: Path, experiment=EXPERIMENT) -> list[Path]:
    """build_report with the test experiment's resolved config and sources (written in ``folder``)."""
    files = config_file(folder, experiment)
    cfg = config_mod.load(files)
    return build_report(cfg, provenance.sources(files, cfg), metrics_paths, log_dirs, out)


def mlplr_lambdas():
    # step k (0-based) uses 1.0 + 0.1 k in the last 10% of training, 0.5 before
    lam = np.full((TRAIN_ITERS, TASK_BATCH, TRAIN_STEPS), 0.5, dtype=np.float32)
    lam[-TRAIN_ITERS // 10:] = (1.0 + 0.1 * np.arange(TRAIN_STEPS)).astype(np.float32)
    return lam


def write_train_log(folder: Path, run, lambdas: np.ndarray | None):
    folder.mkdir(parents=True, exist_ok=True)
    its = list(range(1, TRAIN_ITERS + 1, 10))
    write_json(folder / "train_log.json", {
        "run": run, "iterations": its, "query_loss": [1.0 / i for i in its],
        "query_accuracy": [min(0.99, 0.2 + 0.008 * i) for i in its],
        "inner_steps": TRAIN_STEPS, "task_batch": TASK_BATCH})
    if lambdas is not None:
        np.save(folder / "lambdas.npy", lambdas)
    return folder


def make_inputs(root: Path, acc=ACC, rules=RULES, dataset="glyphs"):
    metrics_paths, log_dirs = [], []
    for (alg, rule, shots), (mean, ci) in acc.items():
        if rule not in rules:
            continue
        run = run_fields(alg, rule, shots, dataset=dataset)
        p = root / "metrics" / f"{dataset}-{alg}-{rule}-{shots}.json"
        write_json(p, metrics(run, mean, ci, TASK_HASH[shots]))
        metrics_paths.append(p)
        lam = (np.full((TRAIN_ITERS, TASK_BATCH, TRAIN_STEPS), FIXED_LR, dtype=np.float32)
               if rule == "fixed" else mlplr_lambdas())
        log_dirs.append(write_train_log(root / "train" / f"{dataset}-{alg}-{rule}-{shots}", run, lam))
    return sorted(metrics_paths), sorted(log_dirs)


def table_rows(tex: str) -> dict[str, list[str]]:
    rows = {}
    for line in tex.splitlines():
        m = re.match(r"^(ANIL|MAML|FOMAML)( \+ MLPLR)? & (.*) \\\\$", line)
        if m:
            rows[m.group(1) + (m.group(2) or "")] = [c.strip() for c in m.group(3).split(" & ")]
    return rows


def read_macros_of(written: list[Path]) -> dict[str, str]:
    return read_macros(next(p for p in written if p.name == "macros.tex"))


def read_macros(path: Path) -> dict[str, str]:
    text = path.read_text()
    found = re.findall(r"^\\newcommand\{\\([^}]*)\}\{(.*)\}(?: %.*)?$", text, flags=re.M)
    assert len(found) == text.count("\\newcommand")
    return dict(found)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    metrics_paths, log_dirs = make_inputs(root)
    out = root / "generated"
    written = report(metrics_paths, log_dirs, out, root)
    return root, metrics_paths, log_dirs, out, written


# --------------------------------------------------------------------------- aggregation

def test_collect_one_sorted_row_per_run(built):
    _, metrics_paths, _, _, _ = built
    df = aggregate.collect(list(reversed(metrics_paths)))
    assert len(df) == len(ACC)
    assert list(df["algorithm"])[:6] == ["anil", "anil", "maml", "maml", "fomaml", "fomaml"]
    assert list(df["rule"])[:6] == ["fixed", "mlplr"] * 3
    assert list(df["shots"]) == [1] * 6 + [5] * 5
    row = df[(df.algorithm == "maml") & (df.rule == "mlplr") & (df.shots == 1)].iloc[0]
    assert row.accuracy_mean == 0.87345 and row.accuracy_n_tasks == 600
    assert row.task_list_sha256 == TASK_HASH[1]
    assert df.equals(aggregate.collect(metrics_paths))
    with pytest.raises(ValueError, match="more than once"):
        aggregate.collect(metrics_paths + metrics_paths[:1])


def test_pct_rounds_half_up():
    assert latex.pct(0.87345) == "87.35"
    assert latex.pct(0.011) == "1.10"
    assert latex.pct(0.8499) == "84.99"
    assert latex.pct(0.1) == "10.00"
    assert latex.pct(float("nan")) == "--"


# --------------------------------------------------------------------------- table 1

def test_accuracy_table_cells_bold_and_missing(built):
    *_, out, _ = built
    tex = (out / "tables.tex").read_text()
    rows = table_rows(tex)
    assert list(rows) == ["ANIL", "ANIL + MLPLR", "MAML", "MAML + MLPLR", "FOMAML", "FOMAML + MLPLR"]
    assert rows["ANIL"] == ["80.00 $\\pm$ 1.00", "93.00 $\\pm$ 0.50"]
    assert rows["ANIL + MLPLR"] == ["81.23 $\\pm$ 1.23", "--"]  # missing 5-shot run
    assert rows["MAML + MLPLR"][0] == "\\textbf{87.35 $\\pm$ 1.10}"  # best 1-shot, rounded half up
    assert rows["FOMAML + MLPLR"] == ["84.99 $\\pm$ 1.05", "\\textbf{97.10 $\\pm$ 0.30}"]
    assert sum(c.startswith("\\textbf") for r in rows.values() for c in r) == 2
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "\\begin{tabular}{lcc}" in tex
    assert "& 1-shot & 5-shot \\\\" in tex
    assert "\\multicolumn{2}{c}{glyphs}" in tex
    # caption: experiment (escaped), number of tasks, short task-list hashes, same tasks
    caption = re.search(r"\\caption\{(.*)\}\n\\label", tex, flags=re.S).group(1)
    assert "quick\\_test" in caption and "quick_test" not in caption.replace("quick\\_test", "")
    assert "same 600 test tasks" in caption
    assert "\\label{tab:other_datasets}" in tex  # glyphs is in no configured table: one table of its own
    assert "\\texttt{aaaaaaaa}" in caption and "\\texttt{bbbbbbbb}" in caption
    assert "5-way" in caption


def render_tables(runs, configured=()):
    return latex.render("accuracy_tables.tex.j2", experiment=EXPERIMENT, **tables.tables_context(
        tables.in_domain_tables(runs, list(configured)), EXPERIMENT, "none"))


def test_accuracy_table_ties_and_seeds(tmp_path):
    acc = {("maml", "fixed", 1): (0.9, 0.01), ("maml", "mlplr", 1): (0.900001, 0.02)}
    paths, _ = make_inputs(tmp_path, acc=acc)
    # a second seed of maml+fixed: the cell becomes the seed mean, the ± the per-task interval of the
    # seed-averaged per-task accuracies, and in parentheses the sd of the seed means
    run = run_fields("maml", "fixed", 1, seed=2)
    extra = tmp_path / "metrics" / "seed2.json"
    write_json(extra, metrics(run, 0.92, 0.01, TASK_HASH[1]))
    tex = render_tables(aggregate.collect(paths + [extra]))
    rows = table_rows(tex)
    seed1 = per_task(run_fields("maml", "fixed", 1), 0.9, 600)
    averaged = (np.asarray(seed1) + np.asarray(per_task(run, 0.92, 600))) / 2
    half = scipy_stats.t.ppf(0.975, 599) * np.std(averaged, ddof=1) / np.sqrt(600)
    sd = np.std([0.9, 0.92], ddof=1)
    assert rows["MAML"] == [f"\\textbf{{91.00 $\\pm$ {latex.pct(half)} ({latex.pct(sd)})}}"]
    assert rows["MAML + MLPLR"] == ["90.00 $\\pm$ 2.00 (n/a)"]  # one seed: no spread across seeds
    assert "standard deviation of the seed means" in tex
    # ties on the displayed value are all bold; with one seed everywhere no spread is shown or invented
    tie = render_tables(aggregate.collect(paths))
    assert all(c[0].startswith("\\textbf") for c in table_rows(tie).values())
    assert "(n/a)" not in tie and "one seed per cell, so no spread across seeds" in tie


def test_accuracy_table_groups_columns_by_dataset_and_ways(tmp_path):
    paths, _ = make_inputs(tmp_path, acc={("maml", "fixed", 1): (0.5, 0.01)}, dataset="omni_glot&co")
    run = dict(run_fields("maml", "fixed", 1, dataset="omni_glot&co"), ways=20, run_id="x/20w1s")
    p = tmp_path / "metrics" / "twenty.json"
    write_json(p, metrics(run, 0.4, 0.01, "c" * 64))
    tex = render_tables(aggregate.collect(paths + [p]))
    assert "\\multicolumn{2}{c}{omni\\_glot\\&co}" in tex
    assert "\\multicolumn{1}{c}{5-way} & \\multicolumn{1}{c}{20-way}" in tex
    assert table_rows(tex)["MAML"] == ["\\textbf{50.00 $\\pm$ 1.00}", "\\textbf{40.00 $\\pm$ 1.00}"]
    names = set(read_macros_of(report(paths + [p], [], tmp_path / "out", tmp_path)))
    assert "AccOmniGlotCoTwentyWayOneShotMamlFixed" in names
    assert "AccMamlFixedOneShot" not in names  # short forms only with a single dataset and ways


def test_different_task_lists_in_a_column_are_rejected(tmp_path):
    paths, _ = make_inputs(tmp_path, acc={("maml", "fixed", 1): (0.5, 0.01)})
    p = tmp_path / "metrics" / "other.json"
    write_json(p, metrics(run_fields("maml", "mlplr", 1), 0.6, 0.01, "d" * 64))
    with pytest.raises(ValueError, match="different task lists"):
        report(paths + [p], [], tmp_path / "out", tmp_path)
    assert not (tmp_path / "out").exists()


def test_latex_escape_and_jinja_delimiters():
    assert latex.latex_escape(r"a_b&c%d$e#f{g}h~i^j\k") == (
        r"a\_b\&c\%d\$e\#f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k")
    assert latex.latex_escape("<|>") == r"\ensuremath{<}\ensuremath{|}\ensuremath{>}"
    env = latex.make_env()
    tpl = env.from_string(r"\textbf{((( x | latex_escape )))}((= note =))((* if y *)){y}((* endif *))")
    assert tpl.render(x="50%", y=True) == r"\textbf{50\%}{y}"
    with pytest.raises(Exception, match="undefined"):
        env.from_string("((( missing )))").render()


def test_macro_names_are_letters_only():
    assert latex.number_words(5) == "Five"
    assert latex.number_words(600) == "SixHundred"
    assert latex.number_words(21) == "TwentyOne"
    assert latex.macro_name("mini_imagenet84", 5, "Way") == "MiniImagenetEightyFourFiveWay"


# --------------------------------------------------------------------------- macros

def test_macros_values(built):
    *_, out, _ = built
    m = read_macros(out / "macros.tex")
    assert all(re.fullmatch(r"[A-Za-z]+", name) for name in m)
    assert m["Experiment"] == "quick\\_test"
    assert m["NumRuns"] == "11" and m["NumMethods"] == "6" and m["NumSettings"] == "2"
    assert m["NumTestTasks"] == "600" and m["NumSeeds"] == "1"
    assert m["EvalInnerSteps"] == "10" and m["TrainInnerSteps"] == "5" and m["TaskBatch"] == "4"
    assert m["AccMamlMlplrOneShot"] == "87.35" and m["CiMamlMlplrOneShot"] == "1.10"
    assert m["AccGlyphsFiveWayOneShotMamlMlplr"] == "87.35"
    assert m["AccFomamlMlplrFiveShot"] == "97.10"
    assert "AccAnilMlplrFiveShot" not in m
    assert m["BestAccOneShot"] == "87.35" and m["BestMethodOneShot"] == "MAML + MLPLR"
    assert m["BestAccFiveShot"] == "97.10" and m["BestMethodFiveShot"] == "FOMAML + MLPLR"
    assert m["BestAcc"] == "97.10" and m["BestSetting"] == "glyphs 5-way 5-shot"
    assert m["LambdaFixed"] == "0.4"
    assert m["LambdaMlplrMin"] == "0.5" and m["LambdaMlplrMax"] == "1.5"
    # pairs: anil/maml/fomaml 1-shot, maml/fomaml 5-shot
    assert m["NumPairedMlplr"] == "5"
    assert m["TaskListHash"] == task_list_digest(aggregate.collect(built[1]))
    assert m["PaperCells"] == "78" and m["PaperCellsRun"] == "0" and m["PaperCellsNotRun"] == "78"
    assert m["NumWaysPanels"] == "0" and m["NumCrossDomainRuns"] == "0"
    assert m["InDomainTableRefs"] == "Table~\\ref{tab:other_datasets}" and m["CrossDomainTableRef"] == "no table"
    assert m["NumChoicesUntagged"] == "0"
    # every macro the appendix uses is defined
    used = set(re.findall(r"\\([A-Z][A-Za-z]+)", (REPO / "paper" / "appendix.tex").read_text()))
    assert used - {"IfFileExists"} <= set(m)


# --------------------------------------------------------------------------- figures and files

def test_outputs_exist_and_figures_nonempty(built):
    *_, out, written = built
    assert [p.name for p in written] == list(OUTPUTS)
    for p in written:
        assert p.is_file() and p.stat().st_size > 0
    for name in ("lambda.pdf", "training.pdf", "ways.pdf", "cross_domain.pdf"):
        assert (out / name).read_bytes().startswith(b"%PDF"), name
    assert (out / "lambda.png").read_bytes().startswith(b"\x89PNG")
    assert b"CreationDate" not in (out / "lambda.pdf").read_bytes()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no atomic-write leftovers
    header = (out / "summary.csv").read_text().splitlines()[0].split(",")
    assert header[:8] == list(aggregate.RUN_FIELDS)
    assert {"accuracy_mean", "accuracy_ci95", "task_list_sha256", "metrics_path"} <= set(header)


def test_lambda_summary_thirds_and_moving_average():
    s = figures.lambda_summary(mlplr_lambdas())
    assert list(s["bounds"]) == [0, 33, 67, 100]
    early, middle, late = s["thirds"]
    assert [len(v) for v in early] == [33 * TASK_BATCH] * TRAIN_STEPS
    np.testing.assert_allclose(early[2], 0.5)  # the last 10% of iterations are all in the late third
    np.testing.assert_allclose(np.sort(late[2])[-10 * TASK_BATCH:], 1.2, rtol=1e-6)
    np.testing.assert_allclose(np.sort(late[2])[:23 * TASK_BATCH], 0.5)
    assert s["smooth"].shape == (len(s["x"]), TRAIN_STEPS)
    np.testing.assert_allclose(s["smooth"][0], 0.5, rtol=1e-6)
    np.testing.assert_allclose(s["smooth"][-1], 1.0 + 0.1 * np.arange(TRAIN_STEPS), rtol=1e-6)
    np.testing.assert_allclose(figures.moving_average(np.arange(5.0), 2), [0.5, 1.5, 2.5, 3.5])


def test_rebuild_is_byte_identical(built, tmp_path):
    _, metrics_paths, log_dirs, out, written = built
    again = report(metrics_paths, log_dirs, tmp_path / "again", tmp_path)
    for a, b in zip(written, again):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_no_mlplr_run_and_no_logs(tmp_path):
    paths, logs = make_inputs(tmp_path, rules=("fixed",))
    written = report(paths, logs, tmp_path / "fixed", tmp_path)
    assert (tmp_path / "fixed" / "lambda.pdf").stat().st_size > 0
    m = read_macros(tmp_path / "fixed" / "macros.tex")
    assert m["LambdaMlplrMin"] == "--" and m["NumPairedMlplr"] == "0" and m["MeanPairedDiffMlplr"] == "--"
    written = report(paths, [], tmp_path / "nologs", tmp_path)
    assert all(p.stat().st_size > 0 for p in written)
    assert read_macros(tmp_path / "nologs" / "macros.tex")["TrainInnerSteps"] == "--"


def test_other_experiment_is_rejected(tmp_path):
    paths, logs = make_inputs(tmp_path, acc={("maml", "fixed", 1): (0.5, 0.01)})
    with pytest.raises(ValueError, match="other experiment"):
        report(paths, logs, tmp_path / "out", tmp_path, "paper")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change", [
    {"rules": {"fixed": {"lr": 0.2}}},  # a value the evaluation reads
    {"evaluate": {"inner_steps": 3}},
])
def test_metrics_made_with_other_config_values_are_refused(tmp_path, change):
    paths, logs = make_inputs(tmp_path, acc={("maml", "fixed", 1): (0.5, 0.01)})
    assert report(paths, logs, tmp_path / "ok", tmp_path)  # the negative control: made with these values
    files = config_file(tmp_path)
    cfg = config_mod.merge(config_mod.load(files), change)
    with pytest.raises(ValueError, match="other config values than the current config") as refused:
        build_report(cfg, provenance.sources(files, config_mod.load(files)), paths, logs, tmp_path / "out")
    assert str(paths[0]) in str(refused.value)
    assert not (tmp_path / "out").exists()


def test_a_value_no_evaluation_reads_leaves_the_metrics_valid(tmp_path):
    paths, logs = make_inputs(tmp_path, acc={("maml", "fixed", 1): (0.5, 0.01)})
    files = config_file(tmp_path)
    cfg = config_mod.merge(config_mod.load(files), {"evaluate": {"tasks": 11}, "rules": {"mlplr": {"lr_max": 0.9}}})
    assert build_report(cfg, provenance.sources(files, config_mod.load(files)), paths, logs, tmp_path / "out")


# --------------------------------------------------------------------------- PDF

def test_compile_appendix(built, tmp_path):
    if not pdf.latex_available():
        pytest.skip("latexmk/pdflatex not installed: the appendix PDF cannot be compiled here")
    *_, out, _ = built
    out = generated_with_analyses(out, tmp_path, "quick")
    paper = tmp_path / "paper dir"  # a space in the path must not matter
    paper.mkdir()
    appendix = paper / "appendix.tex"
    shutil.copyfile(REPO / "paper" / "appendix.tex", appendix)
    shutil.copytree(REPO / "paper" / "sections", paper / "sections")
    target = tmp_path / "out" / "appendix.pdf"
    assert pdf.compile_appendix(appendix, out, target) == target
    assert target.read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in paper.iterdir()) == ["appendix.tex", "sections"]  # no aux files beside it
    assert sorted(p.name for p in target.parent.iterdir()) == ["appendix.pdf"]
    aux = {".aux", ".log", ".fls", ".fdb_latexmk", ".out", ".toc"}
    assert not [p for p in (REPO / "paper").iterdir() if p.suffix in aux]


@pytest.mark.parametrize("installed, named", [
    ({"pdflatex"}, "'latexmk' not found"),  # TeX without latexmk
    (set(), "'latexmk', 'pdflatex' not found"),
])
def test_compile_appendix_without_latex(monkeypatch, tmp_path, installed, named):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda cmd, *a, **k: (
        f"/usr/bin/{cmd}" if cmd in installed else None if cmd in pdf.REQUIRED else real_which(cmd, *a, **k)))
    assert not pdf.latex_available()
    with pytest.raises(pdf.LatexNotInstalled) as err:
        pdf.compile_appendix(REPO / "paper" / "appendix.tex", tmp_path, tmp_path / "appendix.pdf")
    msg = str(err.value)
    assert named + " on PATH" in msg
    assert "apt-get install latexmk texlive-latex-recommended texlive-fonts-recommended" in msg
    assert not (tmp_path / "appendix.pdf").exists()


def test_evaluation_steps_macro_names_the_rules_evaluated_with_other_steps():
    runs = pd.DataFrame({"inner_steps": [10, 10, 10, 5, 5], "rule": ["fixed", "mlplr", "fixed", "alfa", "alfa"]})
    assert evaluation_steps_text(runs) == "10 (5 for ALFA)"
    assert evaluation_steps_text(runs[runs["rule"] != "alfa"]) == "10"
