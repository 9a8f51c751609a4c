"""Report stage: synthetic metrics + training logs -> table, macros, figures, appendix PDF."""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    import metalr  # noqa: F401
except ImportError:  # running without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from metalr.io import write_json
from metalr.report import aggregate, figures, latex, pdf
from metalr.report.build import OUTPUTS, build_report

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


def run_fields(alg, rule, shots, dataset="glyphs", seed=1, experiment=EXPERIMENT):
    return {"experiment": experiment, "dataset": dataset, "algorithm": alg, "rule": rule, "ways": 5,
            "shots": shots, "seed": seed, "run_id": f"{dataset}/5w{shots}s/{alg}-{rule}-seed{seed}"}


def metrics(run, mean, ci, sha, n_tasks=600, lam=(0.5, 1.5)):
    lo, hi = lam if run["rule"] == "mlplr" else (FIXED_LR, FIXED_LR)
    return {
        "run": run,
        "accuracy": {"mean": mean, "ci95": ci, "std": 0.14, "n_tasks": n_tasks},
        "per_task_accuracy": [mean] * 4,
        "inner_steps": EVAL_STEPS,
        "task_list": {"path": f"results/x/tasks/{run['dataset']}-5w{run['shots']}s-q15.json", "sha256": sha},
        "lambda": {"mean_per_step": list(np.linspace(lo, hi, EVAL_STEPS)),
                   "min_per_step": [lo] * EVAL_STEPS, "max_per_step": [hi] * EVAL_STEPS},
        "model": {"path": "m.pt", "sha256": "0" * 64},
        "config_digest": "cfg",
    }


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
    written = build_report(metrics_paths, log_dirs, out, EXPERIMENT)
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

def test_table1_cells_bold_and_missing(built):
    *_, out, _ = built
    tex = (out / "table1.tex").read_text()
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
    assert "\\texttt{aaaaaaaa}" in caption and "\\texttt{bbbbbbbb}" in caption
    assert "5-way" in caption


def test_table1_ties_and_seeds(tmp_path):
    acc = {("maml", "fixed", 1): (0.9, 0.01), ("maml", "mlplr", 1): (0.900001, 0.02)}
    paths, _ = make_inputs(tmp_path, acc=acc)
    # a second seed of maml+fixed: the cell becomes the seed mean and the ± the CI over seeds
    run = run_fields("maml", "fixed", 1, seed=2)
    extra = tmp_path / "metrics" / "seed2.json"
    write_json(extra, metrics(run, 0.92, 0.01, TASK_HASH[1]))
    tex = latex.render_table1(aggregate.collect(paths + [extra]), EXPERIMENT)
    rows = table_rows(tex)
    sd = np.std([0.9, 0.92], ddof=1)
    assert rows["MAML"] == [f"\\textbf{{91.00 $\\pm$ {latex.pct(1.96 * sd / np.sqrt(2))}}}"]
    assert rows["MAML + MLPLR"] == ["90.00 $\\pm$ 2.00"]
    # ties on the displayed value are all bold
    tie = latex.render_table1(aggregate.collect(paths), EXPERIMENT)
    assert all(c[0].startswith("\\textbf") for c in table_rows(tie).values())


def test_table1_groups_columns_by_dataset_and_ways(tmp_path):
    paths, _ = make_inputs(tmp_path, acc={("maml", "fixed", 1): (0.5, 0.01)}, dataset="omni_glot&co")
    run = dict(run_fields("maml", "fixed", 1, dataset="omni_glot&co"), ways=20, run_id="x/20w1s")
    p = tmp_path / "metrics" / "twenty.json"
    write_json(p, metrics(run, 0.4, 0.01, "c" * 64))
    tex = latex.render_table1(aggregate.collect(paths + [p]), EXPERIMENT)
    assert "\\multicolumn{2}{c}{omni\\_glot\\&co}" in tex
    assert "\\multicolumn{1}{c}{5-way} & \\multicolumn{1}{c}{20-way}" in tex
    assert table_rows(tex)["MAML"] == ["\\textbf{50.00 $\\pm$ 1.00}", "\\textbf{40.00 $\\pm$ 1.00}"]
    macros = latex.macros_model(aggregate.collect(paths + [p]), EXPERIMENT)
    names = {m["name"] for m in macros}
    assert "AccOmniGlotCoTwentyWayOneShotMamlFixed" in names
    assert "AccMamlFixedOneShot" not in names  # short forms only with a single dataset and ways


def test_different_task_lists_in_a_column_are_rejected(tmp_path):
    paths, _ = make_inputs(tmp_path, acc={("maml", "fixed", 1): (0.5, 0.01)})
    p = tmp_path / "metrics" / "other.json"
    write_json(p, metrics(run_fields("maml", "mlplr", 1), 0.6, 0.01, "d" * 64))
    with pytest.raises(ValueError, match="different task lists"):
        latex.render_table1(aggregate.collect(paths + [p]), EXPERIMENT)


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
    # pairs: anil/maml/fomaml 1-shot, maml/fomaml 5-shot; MLPLR better in all five
    assert m["NumPairs"] == "5" and m["NumPairsImproved"] == "5"
    gains = [0.81234 - 0.8, 0.87345 - 0.85, 0.8499 - 0.84, 0.96 - 0.95, 0.971 - 0.94]
    assert m["MeanGainMlplr"] == latex.pct(sum(gains) / 5)
    assert m["TaskListHash"] == latex.task_list_digest(aggregate.collect(built[1]))
    # every macro the appendix uses is defined
    used = set(re.findall(r"\\([A-Z][A-Za-z]+)", (REPO / "paper" / "appendix.tex").read_text()))
    assert used - {"IfFileExists"} <= set(m)


# --------------------------------------------------------------------------- figures and files

def test_outputs_exist_and_figures_nonempty(built):
    *_, out, written = built
    assert [p.name for p in written] == list(OUTPUTS)
    for p in written:
        assert p.is_file() and p.stat().st_size > 0
    assert (out / "lambda.pdf").read_bytes().startswith(b"%PDF")
    assert (out / "training.pdf").read_bytes().startswith(b"%PDF")
    assert (out / "lambda.png").read_bytes().startswith(b"\x89PNG")
    assert b"CreationDate" not in (out / "lambda.pdf").read_bytes()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no atomic-write leftovers
    header = (out / "summary.csv").read_text().splitlines()[0].split(",")
    assert header[:8] == list(aggregate.RUN_FIELDS)
    assert {"accuracy_mean", "accuracy_ci95", "task_list_sha256", "metrics_path"} <= set(header)


def test_lambda_summary_late_window_and_moving_average():
    s = figures.lambda_summary(mlplr_lambdas())
    assert s["late_window"] == 10
    np.testing.assert_allclose(s["late_mean"], 1.0 + 0.1 * np.arange(TRAIN_STEPS), rtol=1e-6)
    assert s["smooth"].shape == (len(s["x"]), TRAIN_STEPS)
    np.testing.assert_allclose(s["smooth"][0], 0.5, rtol=1e-6)
    np.testing.assert_allclose(s["smooth"][-1], 1.0 + 0.1 * np.arange(TRAIN_STEPS), rtol=1e-6)
    np.testing.assert_allclose(figures.moving_average(np.arange(5.0), 2), [0.5, 1.5, 2.5, 3.5])


def test_rebuild_is_byte_identical(built, tmp_path):
    _, metrics_paths, log_dirs, out, written = built
    again = build_report(metrics_paths, log_dirs, tmp_path / "again", EXPERIMENT)
    for a, b in zip(written, again):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_no_mlplr_run_and_no_logs(tmp_path):
    paths, logs = make_inputs(tmp_path, rules=("fixed",))
    written = build_report(paths, logs, tmp_path / "fixed", EXPERIMENT)
    assert (tmp_path / "fixed" / "lambda.pdf").stat().st_size > 0
    m = read_macros(tmp_path / "fixed" / "macros.tex")
    assert m["LambdaMlplrMin"] == "--" and m["NumPairs"] == "0" and m["MeanGainMlplr"] == "--"
    written = build_report(paths, [], tmp_path / "nologs", EXPERIMENT)
    assert all(p.stat().st_size > 0 for p in written)
    assert read_macros(tmp_path / "nologs" / "macros.tex")["TrainInnerSteps"] == "--"


def test_other_experiment_is_rejected(tmp_path):
    paths, logs = make_inputs(tmp_path, acc={("maml", "fixed", 1): (0.5, 0.01)})
    with pytest.raises(ValueError, match="other experiment"):
        build_report(paths, logs, tmp_path / "out", "paper")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- PDF

def test_compile_appendix(built, tmp_path):
    if not pdf.latex_available():
        pytest.skip("latexmk/pdflatex not installed: the appendix PDF cannot be compiled here")
    *_, out, _ = built
    paper = tmp_path / "paper dir"  # a space in the path must not matter
    paper.mkdir()
    appendix = paper / "appendix.tex"
    shutil.copyfile(REPO / "paper" / "appendix.tex", appendix)
    target = tmp_path / "out" / "appendix.pdf"
    assert pdf.compile_appendix(appendix, out, target) == target
    assert target.read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in paper.iterdir()) == ["appendix.tex"]  # no aux files beside it
    assert sorted(p.name for p in target.parent.iterdir()) == ["appendix.pdf"]
    aux = {".aux", ".log", ".fls", ".fdb_latexmk", ".out", ".toc"}
    assert not [p for p in (REPO / "paper").iterdir() if p.suffix in aux]


def test_compile_appendix_without_latex(monkeypatch, tmp_path):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda cmd, *a, **k: None if cmd == "latexmk" else real_which(cmd, *a, **k))
    assert not pdf.latex_available()
    with pytest.raises(pdf.LatexNotInstalled) as err:
        pdf.compile_appendix(REPO / "paper" / "appendix.tex", tmp_path, tmp_path / "appendix.pdf")
    msg = str(err.value)
    assert "'latexmk' not found" in msg
    assert "apt-get install latexmk texlive-latex-recommended texlive-fonts-recommended" in msg
    assert not (tmp_path / "appendix.pdf").exists()
