"""Report for the paper's experiments: cross-domain rows, configured tables, paper vs ours, paired
statistics, the ways figure, the choices ledger and the macros-only appendix prose."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from metalr import config as config_mod
from metalr import provenance
from metalr.config import DEFAULT_CONFIG, REPO_ROOT
from metalr.evaluate.stats import paired_difference
from metalr.io import write_json
from metalr.report import aggregate, choices, paired, paper, pdf
from metalr.report.build import OUTPUTS
from tests.unit.appendix_inputs import generated_with_analyses
from tests.unit.test_report import metrics, read_macros, report, run_fields, task_classes

HASH = {(d, w, s): hashlib.sha256(f"{d}/{w}/{s}".encode()).hexdigest() for d in ("cifar_fs", "mini_imagenet", "aircraft", "cub", "glyphs")
        for w in (5, 10) for s in (1, 5)}


def write_eval(root: Path, alg, rule, shots, dataset, test=None, ways=5, seed=1, mean=0.5, ci=0.01, sha=None,
               scores=None, unseen=None) -> Path:
    test = test or dataset
    run = run_fields(alg, rule, shots, dataset=dataset, seed=seed, ways=ways)
    path = root / "metrics" / f"{run['run_id'].replace('/', '_')}-on-{test}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = metrics(run, mean, ci, sha or HASH[(test, ways, shots)], test_dataset=test, scores=scores)
    if unseen is not None:
        data["evaluation"]["unseen_by"] = unseen
    write_json(path, data)
    return path


def unseen_by(train="mini_imagenet", excluded=("n02089867",), total=30, with_wnid=30) -> dict:
    """A cross-domain evaluation's record of the test classes left out (metalr.data.episodes.unseen_by_record)."""
    return {"dataset": train, "matched_by": "WordNet id", "classes_with_wordnet_id": with_wnid,
            "excluded": [{"index": i, "class": f"{w}-breed", "wordnet_id": w} for i, w in enumerate(excluded)],
            "classes_total": total, "classes_remaining": total - len(excluded)}


@pytest.fixture(scope="module")
def paper_like(tmp_path_factory):
    """cifar_fs (Table 1) at 5 and 10 ways, mini_imagenet -> aircraft / cub (Table 3), glyphs (other)."""
    root = tmp_path_factory.mktemp("paper_like")
    paths = []
    for alg in ("maml", "anil"):
        for rule, gain in (("fixed", 0.0), ("mlplr", 0.02)):
            # the paper's cifar_fs 5-way 1-shot: MAML 56.44 ± 0.96, MAML + MLPLR 56.31 ± 0.96
            paths.append(write_eval(root, alg, rule, 1, "cifar_fs", mean=0.5644 + gain, ci=0.0096))
            paths.append(write_eval(root, alg, rule, 1, "cifar_fs", ways=10, mean=0.40 + gain))
            paths.append(write_eval(root, alg, rule, 5, "glyphs", mean=0.9 + gain))
            for test in ("aircraft", "cub"):
                paths.append(write_eval(root, alg, rule, 5, "mini_imagenet", test=test, mean=0.40 + gain))
    out = root / "generated"
    written = report(paths, [], out, root)
    return root, paths, out, written


# --------------------------------------------------------------------------- aggregation

def test_test_dataset_column_and_duplicates(paper_like, tmp_path):
    _, paths, out, _ = paper_like
    df = aggregate.collect(paths)
    cross = df[df["dataset"] != df["test_dataset"]]
    assert sorted(set(cross["test_dataset"])) == ["aircraft", "cub"] and set(cross["dataset"]) == {"mini_imagenet"}
    assert "test_dataset" in (out / "summary.csv").read_text().splitlines()[0].split(",")
    # the same run on two test sets is fine; the same run twice on one test set is not
    again = write_eval(tmp_path, "maml", "fixed", 5, "mini_imagenet", test="cub", mean=0.3)
    with pytest.raises(ValueError, match="more than once.*on cub"):
        aggregate.collect(paths + [again])
    # an old metrics file without `evaluation` is in-domain
    old = tmp_path / "old.json"
    data = metrics(run_fields("maml", "fixed", 1, dataset="glyphs"), 0.5, 0.01, "e" * 64)
    write_json(old, data)
    assert aggregate.collect([old])["test_dataset"].tolist() == ["glyphs"]


def test_task_lists_are_checked_per_test_dataset_and_class_pool(tmp_path):
    ok = [write_eval(tmp_path, "maml", "fixed", 5, "cub"),
          write_eval(tmp_path, "maml", "fixed", 5, "mini_imagenet", test="cub", sha="c" * 64, unseen=unseen_by()),
          write_eval(tmp_path, "anil", "fixed", 5, "mini_imagenet", test="cub", sha="c" * 64, unseen=unseen_by())]
    assert set(aggregate.check_same_tasks(aggregate.collect(ok))) == {("cub", 5, 5, ""),
                                                                      ("cub", 5, 5, "unseen by mini_imagenet")}
    bad = write_eval(tmp_path, "maml", "mlplr", 5, "mini_imagenet", test="cub", sha="f" * 64, unseen=unseen_by())
    with pytest.raises(ValueError, match=r"test set \('cub', 5, 5, 'unseen by mini_imagenet'\).*different task lists"):
        aggregate.check_same_tasks(aggregate.collect(ok + [bad]))


def test_the_cross_domain_table_says_which_test_classes_were_left_out_and_how_many_remain(tmp_path):
    runs = [write_eval(tmp_path, alg, "fixed", 5, "mini_imagenet", test=test, sha=sha, unseen=record)
            for alg in ("maml", "anil")
            for test, sha, record in (
                ("stanford_dogs", "d" * 64, unseen_by(excluded=("n02089867", "n02105505", "n02108089"))),
                ("cub", "c" * 64, unseen_by(excluded=(), total=20, with_wnid=0)))]
    out = tmp_path / "generated"
    report(runs, [], out, tmp_path)
    tex = " ".join((out / "cross_domain_table.tex").read_text().split())
    assert ("3 of the 30 test classes of stanford\\_dogs are meta-train classes of mini\\_imagenet (same WordNet id: "
            "n02089867, n02105505, n02108089) and were left out; 27 remain.") in tex
    assert "The test classes of cub carry no WordNet id, so none could be matched" in tex
    assert "stanford\\_dogs 5-way 5-shot (unseen by mini\\_imagenet)" in tex


# --------------------------------------------------------------------------- tables

def test_configured_tables_other_and_cross_domain(paper_like):
    _, _, out, _ = paper_like
    tex = (out / "tables.tex").read_text()
    labels = re.findall(r"\\label\{([^}]*)\}", tex)
    assert labels == ["tab:table1", "tab:other_datasets"]  # table2 (fine-grained) has no runs: left out
    table1 = tex.split("\\label{tab:table1}")[1].split("\\end{table}")[0]
    assert "cifar\\_fs" in table1 and "glyphs" not in table1 and "mini" not in table1
    assert "\\multicolumn{1}{c}{5-way} & \\multicolumn{1}{c}{10-way}" in table1
    cross = (out / "cross_domain_table.tex").read_text()
    assert "\\label{tab:cross_domain}" in cross
    assert "mini\\_imagenet $\\rightarrow$ aircraft" in cross and "mini\\_imagenet $\\rightarrow$ cub" in cross
    m = read_macros(out / "macros.tex")
    assert m["InDomainTableRefs"] == "Tables~\\ref{tab:table1} and~\\ref{tab:other_datasets}"
    assert m["CrossDomainTableRef"] == "Table~\\ref{tab:cross_domain}"
    assert m["NumCrossDomainRuns"] == "8"
    assert "AccMiniImagenetToCubFiveWayFiveShotMamlMlplr" in m


# --------------------------------------------------------------------------- paper vs ours

def test_paper_vs_ours_cells(paper_like):
    _, _, out, _ = paper_like
    tex = (out / "paper_vs_ours.tex").read_text()
    rows = [line for line in tex.splitlines() if re.match(r"^\d & ", line)]
    # run here: cifar_fs 5w1s and mini_imagenet -> aircraft/cub 5w5s, MAML/ANIL x fixed/MLPLR
    assert len(rows) == 4 + 8
    assert "1 & cifar\\_fs & 5-way 1-shot & MAML & 56.44 $\\pm$ 0.96 & 56.44 $\\pm$ 0.96 & 0.00 & yes \\\\" in rows
    # ours 58.44 vs the paper's 56.31: |2.13| > 0.96 + 0.96
    assert "1 & cifar\\_fs & 5-way 1-shot & MAML + MLPLR & 56.31 $\\pm$ 0.96 & 58.44 $\\pm$ 0.96 & 2.13 & no \\\\" in rows
    m = read_macros(out / "macros.tex")
    assert m["PaperCells"] == "78" and m["PaperCellsRun"] == "12" and m["PaperCellsNotRun"] == "66"
    assert m["PaperSummary"] == (f"{m['PaperCellsReproduced']} of 12 paper cells reproduce (intervals overlap); "
                                 "66 not run in this experiment")


@settings(max_examples=60, deadline=None)
@given(ours=st.floats(0, 1), ci_ours=st.floats(0, 0.05), theirs=st.floats(0, 100), ci_theirs=st.floats(0, 5))
def test_overlap_is_interval_intersection(ours, ci_ours, theirs, ci_theirs):
    cells = pd.DataFrame([dict(dataset="cub", test_dataset="cub", ways=5, shots=1, algorithm="maml", rule="fixed",
                               mean=ours, ci95=ci_ours, n_seeds=1)])
    table = pd.DataFrame([dict(table=2, dataset="cub", test_dataset="cub", ways=5, shots=1, algorithm="maml",
                               rule="fixed", paper_mean=theirs, paper_ci95=ci_theirs)])
    row = paper.compare(cells, table).iloc[0]
    lo, hi = max(100 * ours - 100 * ci_ours, theirs - ci_theirs), min(100 * ours + 100 * ci_ours, theirs + ci_theirs)
    assert bool(row["overlap"]) == (lo <= hi + 1e-9) or abs(lo - hi) < 1e-6
    assert row["difference"] == pytest.approx(100 * ours - theirs)


def test_paper_results_file_errors(tmp_path):
    committed = paper.load_paper_results(REPO_ROOT / "config" / "paper_results.csv")
    reference = pd.read_csv(REPO_ROOT.parent / "shared" / "reference" / "mlplr_paper_results.csv") \
        if (REPO_ROOT.parent / "shared" / "reference" / "mlplr_paper_results.csv").exists() else None
    assert len(committed) == 78 and sorted(set(committed["table"])) == [1, 2, 3]
    if reference is not None:
        assert committed["paper_mean"].tolist() == reference["accuracy_pct"].tolist()
    with pytest.raises(ValueError, match=r"missing\.csv \(config report\.paper_results\) does not exist"):
        paper.load_paper_results(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("# source: nowhere\ntable,train_dataset\n1,cub\n")
    with pytest.raises(ValueError, match=r"bad\.csv \(config report\.paper_results\): missing column"):
        paper.load_paper_results(bad)


# --------------------------------------------------------------------------- paired statistics

def _runs(tmp_path, spec) -> pd.DataFrame:
    return aggregate.collect([write_eval(tmp_path, *args, **kw) for args, kw in spec])


def test_paired_is_generic_over_rules_and_matches_stats(tmp_path):
    rng = np.random.default_rng(0)
    base, sgd, mlp = (rng.uniform(0.3, 0.9, 600) for _ in range(3))
    runs = _runs(tmp_path, [(("maml", r, 1, "cub"), {"scores": s}) for r, s in
                            (("fixed", base), ("meta-sgd", sgd), ("mlplr", mlp))])
    df = paired.paired(runs, 1000, 0)
    assert df["rule"].tolist() == ["mlplr", "meta-sgd"]  # paper rule order, then the others
    got = df[df["rule"] == "meta-sgd"].iloc[0]
    assert got["mean"] == pytest.approx(float(np.mean(sgd - base)))
    assert (got["control"], got["n_seeds"], got["seeds"], got["verdict"]) == ("fixed", 1, "1", paired.ONE_SEED)
    # one seed: nothing across seeds, no bootstrap, no probability of improvement
    for key in ("seed_sd", "seed_ci95", "seed_low", "seed_high", "boot_low", "boot_high", "poi", "poi_low", "poi_high",
                "n_classes"):
        assert pd.isna(got[key]), key
    assert "n/a" in paired.paired_csv(df).splitlines()[1]
    # the per-task test of that seed's two networks
    within = paired.within_seed(runs)
    expect = paired_difference(sgd, base)
    row = within[within["rule"] == "meta-sgd"].iloc[0]
    for key in ("mean", "ci95", "low", "high", "p_value", "n_tasks"):
        assert row[key] == pytest.approx(expect[key])
    assert row["seed"] == 1 and within["rule"].tolist() == ["mlplr", "meta-sgd"]


def test_paired_refuses_different_task_lists(tmp_path):
    runs = _runs(tmp_path, [(("maml", "fixed", 1, "cub"), {}), (("maml", "mlplr", 1, "cub"), {"sha": "9" * 64})])
    with pytest.raises(ValueError, match="task lists differ"):
        paired.paired(runs, 1000, 0)
    with pytest.raises(ValueError, match="task lists differ"):
        paired.within_seed(runs)


def test_verdict_needs_several_seeds_without_class_scores_it_is_refused(tmp_path):
    spec = [(("maml", rule, 1, "cub"), {"seed": s}) for rule in ("fixed", "mlplr") for s in (1, 2)]
    runs = _runs(tmp_path, spec)
    runs.at[0, aggregate.PER_TASK_CLASS_ACCURACY] = ()  # an older metrics file: no per-class accuracies
    with pytest.raises(ValueError, match=r"no per-class accuracies .* re-run its evaluation"):
        paired.paired(runs, 1000, 0)
    assert len(paired.paired(runs[runs["seed"] == 1], 1000, 0)) == 1  # one seed does not use them


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), n_seeds=st.integers(1, 3))
def test_paired_differences_per_seed_and_across_seeds(tmp_path_factory, seed, n_seeds):
    rng = np.random.default_rng(seed)
    root = tmp_path_factory.mktemp("seeds")
    spec, scores = [], []
    for s in range(1, n_seeds + 1):
        a, b = rng.uniform(0, 1, 20), rng.uniform(0, 1, 20)
        spec += [(("anil", "fixed", 1, "cub"), {"seed": s, "scores": a}), (("anil", "mlplr", 1, "cub"), {"seed": s, "scores": b})]
        scores.append((b, a))
    spec.append((("anil", "mlplr", 1, "cub"), {"seed": n_seeds + 1, "scores": rng.uniform(0, 1, 20)}))  # no partner
    for args, kw in spec:
        kw.setdefault("mean", float(np.mean(kw["scores"])))
    runs = aggregate.collect([write_eval(root, *args, **kw) for args, kw in spec])
    runs["accuracy_n_tasks"] = 20
    diffs = [b - a for b, a in scores]
    row = paired.paired(runs, 200, 0).iloc[0]
    assert row["n_seeds"] == n_seeds and row["n_tasks"] == 20
    assert row["seeds"] == " ".join(str(s) for s in range(1, n_seeds + 1))
    seed_means = [float(np.mean(d)) for d in diffs]
    assert row["mean"] == pytest.approx(float(np.mean(seed_means)))
    if n_seeds > 1:  # the Student-t interval over the seeds' differences
        assert row["seed_sd"] == pytest.approx(float(np.std(seed_means, ddof=1)))
        low, high = scipy_stats.t.interval(0.95, n_seeds - 1, loc=np.mean(seed_means),
                                           scale=scipy_stats.sem(seed_means))
        assert (row["seed_low"], row["seed_high"]) == pytest.approx((low, high))
        classes = {c for task in task_classes(HASH[("cub", 5, 1)], 20, 5) for c in task}
        assert row["n_classes"] == len(classes) and 0 <= row["poi"] <= 1 and row["boot_low"] <= row["boot_high"]
    within = paired.within_seed(runs)
    assert within["seed"].tolist() == list(range(1, n_seeds + 1))
    assert within["mean"].tolist() == pytest.approx(seed_means)
    assert within["p_value"].tolist() == pytest.approx([scipy_stats.ttest_rel(b, a).pvalue for b, a in scores])


# --------------------------------------------------------------------------- figures

def test_ways_and_cross_domain_figures_are_drawn(paper_like, tmp_path):
    _, paths, out, written = paper_like
    assert [p.name for p in written] == list(OUTPUTS)
    m = read_macros(out / "macros.tex")
    assert m["NumWaysPanels"] == "1" and m["WaysFigureSettings"] == "cifar\\_fs 1-shot at 5, 10 ways"
    # a real panel holds more than the placeholder's one line of text
    glyphs_only = [p for p in paths if "glyphs" in p.name]
    placeholder = report(glyphs_only, [], tmp_path / "g", tmp_path)
    sizes = {p.name: p.stat().st_size for p in placeholder}
    assert (out / "ways.pdf").stat().st_size > 1.3 * sizes["ways.pdf"]
    assert (out / "cross_domain.pdf").stat().st_size > 1.3 * sizes["cross_domain.pdf"]
    assert "No cross-domain evaluation" in (tmp_path / "g" / "cross_domain_table.tex").read_text()
    assert "None of the paper's 78 table cells" in (tmp_path / "g" / "paper_vs_ours.tex").read_text()


# --------------------------------------------------------------------------- choices ledger

def ledger(files, used=None):
    cfg = config_mod.load(files)
    return choices.ledger(cfg, provenance.sources(files, cfg), used)


def test_every_leaf_of_config_yaml_has_a_provenance_tag():
    ledger_ = ledger([DEFAULT_CONFIG])
    untagged = [c.key for c in ledger_ if not c.tag]
    assert not untagged, f"config/config.yaml keys without a [tag] in their comment (or a parent's): {untagged}"
    assert len(ledger_) > 50


def test_ledger_layering_inheritance_and_sources(tmp_path):
    layer = tmp_path / "layer.yaml"
    layer.write_text("experiment: x          # [quick] a test\n"
                     "model:\n  filters: 8   # [MAML] four filters\n"
                     "train:\n  iterations: 7\n")
    by_key = {c.key: c for c in ledger([DEFAULT_CONFIG, layer], used={"datasets": {"glyphs"}, "algorithms": {"maml"},
                                                                      "rules": {"fixed"}})}
    assert by_key["model.filters"].value == "8" and by_key["model.filters"].tag == "MAML"
    assert by_key["model.filters"].source == "cited reference (MAML, Finn et al. 2017)"
    assert by_key["model.filters"].set_in == "layer 1" and by_key["model.name"].set_in == "defaults"
    assert by_key["experiment"].source == "our choice (quick-run budget)"
    # no tag in the later file: the earlier file's tag stays
    assert by_key["train.iterations"].value == "7" and by_key["train.iterations"].tag == "ours"
    assert by_key["data.download.attempts"].tag == "ours"  # inherited from `download:  # [ours] ...`
    assert by_key["seed"].source == "paper" and by_key["rules.fixed.lr"].value == "0.4"
    assert by_key["train.outer_lr_min"].source == "cited reference (MAML++ 2018)"
    # only the datasets / algorithms / rules the experiment used
    assert "data.cub.split" not in by_key and "rules.mlplr.lr_max" not in by_key and "data.glyphs.seed" in by_key


def test_comment_tags_parser(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("a:            # [paper] block\n  b: 1         # no tag here [ours]\n"
                 "  c: [x, y]    # [ours] list\n                # continuation [quick]\n"
                 "d:\n  - {e: 1}\n  - {e: 2}\nf: '#' # [iMAML 2019]\n")
    assert provenance.comment_tags(f) == {"a": "paper", "a.c": "ours", "f": "iMAML 2019"}


def test_the_ledger_reads_sources_by_content_not_by_file_name(tmp_path):
    """Two files with the same text under other names and places give the same sources and ledger."""
    text = "experiment: x   # [quick] a test\nmodel:\n  filters: 8   # [MAML] four filters\n"
    first, second = tmp_path / "a.yaml", tmp_path / "élsewhere dir" / "b c.yaml"
    second.parent.mkdir()
    first.write_text(text)
    second.write_text(text)
    cfg = config_mod.load([DEFAULT_CONFIG, first])
    assert provenance.sources([DEFAULT_CONFIG, first], cfg) == provenance.sources([DEFAULT_CONFIG, second], cfg)
    assert ledger([DEFAULT_CONFIG, first]) == ledger([DEFAULT_CONFIG, second])
    with pytest.raises(ValueError, match="no entry for model.filters"):  # sources of another config are refused
        choices.ledger(cfg, {k: v for k, v in provenance.sources([DEFAULT_CONFIG, first], cfg).items()
                             if k != "model.filters"})


# --------------------------------------------------------------------------- macros-only prose

def prose_digits(tex: str) -> list[str]:
    """Digits typed in the appendix body outside macros: comments, display math, subscripts, command
    options and the arguments of label/ref/input/includegraphics and the paper's own figure/table
    numbers are not prose numbers."""
    body = tex.split("\\begin{document}", 1)[-1]
    body = re.sub(r"(?<!\\)%.*", "", body)
    body = re.sub(r"\\begin\{(equation|align)\*?\}.*?\\end\{\1\*?\}", "", body, flags=re.S)
    body = re.sub(r"_(\d|\{[^}]*\})", "", body)
    body = re.sub(r"\\(label|ref|input|includegraphics|begin|end)(\[[^\]]*\])?\{[^}]*\}(\[[^\]]*\])?", "", body)
    body = re.sub(r"paper's (Tables?|Figure)~\d+(--\d+)?", "", body)
    body = re.sub(r"\b(Conv-4|float64|float32|bf16)\b", "", body)  # names, not quantities
    return [m.group(0) for m in re.finditer(r".{0,30}\d.{0,30}", body)]


def test_appendix_prose_has_no_typed_number():
    tex = (REPO_ROOT / "paper" / "appendix.tex").read_text()
    assert prose_digits(tex) == []
    for section in sorted((REPO_ROOT / "paper" / "sections").glob("*.tex")):  # \input into the body
        assert prose_digits(section.read_text()) == [], section.name
    # the check can fail: a typed number in prose, math or a caption is caught
    for typed in ("We ran 600 tasks.", "$\\lambda = 0.4$", "\\caption{top-5 accuracy}"):
        assert prose_digits(tex.replace("\\section{Results}", "\\section{Results}\n" + typed)), typed


def test_every_macro_the_appendix_uses_is_generated(paper_like):
    _, _, out, _ = paper_like
    defined = set(read_macros(out / "macros.tex"))
    tex = (REPO_ROOT / "paper" / "appendix.tex").read_text()
    used = set(re.findall(r"\\([A-Z][A-Za-z]+)", tex.split("\\begin{document}")[1]))
    assert used <= defined
    inputs = set(re.findall(r"\\gendir/([A-Za-z_.]+)", tex))
    assert inputs <= set(OUTPUTS)


def test_appendix_compiles_with_every_kind_of_table(paper_like, tmp_path):
    if not pdf.latex_available():
        pytest.skip("latexmk/pdflatex not installed: the appendix PDF cannot be compiled here")
    _, _, out, _ = paper_like
    out = generated_with_analyses(out, tmp_path, "paper")
    target = pdf.compile_appendix(REPO_ROOT / "paper" / "appendix.tex", out, tmp_path / "appendix.pdf")
    assert target.read_bytes().startswith(b"%PDF")
