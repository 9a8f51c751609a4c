"""`metalr <stage>`: the command-line entry point that Snakemake rules and DVC stages call."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metalr import config as config_mod
from metalr import stages
from metalr.models import BACKBONES

KNOWN_ERRORS: tuple[type[BaseException], ...] = (config_mod.ConfigError,)
_gpu_claim = None  # held for the life of the process: releasing it frees the GPU for another job


def _config_files(args: argparse.Namespace) -> list[Path]:
    """config/config.yaml of the project the CLI runs in (not of the checkout it was installed from), then
    the --configfile layers."""
    return [config_mod.default_config(), *map(Path, args.configfile)]


def _load(args: argparse.Namespace) -> dict:
    """The resolved config of ``--config`` (what jobs read), or the ``--configfile`` files layered over the defaults."""
    if getattr(args, "config", None):
        if args.configfile:
            raise config_mod.ConfigError("give either --config (a resolved config) or --configfile (layered files)")
        return config_mod.load([args.config])
    return config_mod.load(_config_files(args))


def _sources(args: argparse.Namespace, cfg: dict) -> dict:
    """The source of every value: written beside a resolved config by `metalr config`, or read from the files."""
    from metalr import provenance

    if getattr(args, "config", None):
        path = stages.config_sources_file(cfg)
        if not path.is_file():
            raise config_mod.ConfigError(f"{path} is missing: it is written with {args.config} by `metalr config`")
        return config_mod.read_yaml(path)
    return provenance.sources(_config_files(args), cfg)


def _run(cfg: dict, run_id: str) -> config_mod.Run:
    run = config_mod.Run.parse(run_id)
    config_mod.check_run_in_grid(cfg, run)
    return run


def _check_dataset(name: str) -> None:
    from metalr.data.registry import DATASETS

    if name not in DATASETS:
        raise config_mod.ConfigError(f"unknown dataset {name!r}; valid: {sorted(DATASETS)}")


def cmd_validate(args: argparse.Namespace) -> None:
    cfg = _load(args)
    runs = config_mod.grid_runs(cfg)
    cross = config_mod.cross_domain_evaluations(cfg)
    print(f"config OK ({' + '.join(map(str, _config_files(args)))}): experiment {cfg['experiment']!r}, "
          f"{len(runs)} runs, {len(cross)} cross-domain evaluations")
    for run in runs:
        print(f"  {run.run_id}")
    for run, test in cross:
        print(f"  {run.run_id} on {test}")


def cmd_config(args: argparse.Namespace) -> None:
    from metalr import provenance

    cfg = _load(args)
    written = stages.write_resolved(cfg, provenance.sources(_config_files(args), cfg))
    outputs = stages.STAGES["resolved_config"].outputs(cfg, {})
    change = f"rewritten: {', '.join(map(str, written))}" if written else "unchanged"
    print(f"resolved config of experiment {cfg['experiment']!r} -> {outputs['config']} "
          f"(sources: {outputs['sources']}); {change}")


def cmd_data(args: argparse.Namespace) -> None:
    from metalr.data.prepare import prepare

    cfg = _load(args)
    _check_dataset(args.dataset)
    out = Path(args.out) if args.out else stages.dataset_dir(cfg, args.dataset)
    manifest = prepare(cfg, args.dataset, out)
    counts = {split: len(meta["classes"]) for split, meta in manifest["splits"].items()}
    print(f"{args.dataset}: classes per split {counts} -> {out}")


def cmd_tasks(args: argparse.Namespace) -> None:
    from metalr import io
    from metalr.data.arrays import MANIFEST, load_split, read_manifest, split_hashes
    from metalr.data.episodes import make_task_list, unseen_by_record

    cfg = _load(args)
    _check_dataset(args.dataset)
    # Checked here, before the dataset is read: these come from the command line, not the validated config.
    for flag, value, least in (("--ways", args.ways, 2), ("--shots", args.shots, 1)):
        if value < least:
            raise config_mod.ConfigError(f"{flag} must be an integer >= {least}, got {value}")
    ecfg = cfg["evaluate"]
    data_dir = stages.dataset_dir(cfg, args.dataset)
    if args.split == "val":
        # Validation tasks come from the meta-val classes (evaluate.val_tasks of them), by the same mechanism
        # as the test tasks; they record the val arrays' hashes only, nothing of the test split.
        if args.unseen_by:
            raise config_mod.ConfigError("--unseen-by draws cross-domain test tasks; validation tasks take no --unseen-by")
        split = load_split(data_dir, "val")
        _check_cell_fits(split, args.dataset, "val", ecfg, args.ways, args.shots, None)
        task_list = make_task_list(
            split, dataset=args.dataset, split_name="val", ways=args.ways, shots=args.shots,
            queries=ecfg["queries"], tasks=ecfg["val_tasks"], seed=ecfg["task_seed"],
            split_sha256=split_hashes(data_dir, "val"))
        out = Path(args.out) if args.out else stages.val_tasks_file(cfg, args.dataset, args.ways, args.shots)
        io.write_json(out, task_list)
        print(f"{len(task_list['episodes'])} validation tasks, sha256 {task_list['sha256'][:12]} -> {out}")
        return
    split = load_split(data_dir, ecfg["split"])
    unseen_by = None
    if args.unseen_by:
        _check_dataset(args.unseen_by)
        train_dir = stages.dataset_dir(cfg, args.unseen_by)
        train_classes = read_manifest(train_dir)["splits"]["train"]["classes"]
        unseen_by = unseen_by_record(split.classes, args.unseen_by, train_classes, io.sha256_file(train_dir / MANIFEST))
    _check_cell_fits(split, args.dataset, ecfg["split"], ecfg, args.ways, args.shots, unseen_by)
    task_list = make_task_list(
        split, dataset=args.dataset, split_name=ecfg["split"], ways=args.ways, shots=args.shots,
        queries=ecfg["queries"], tasks=ecfg["tasks"], seed=ecfg["task_seed"],
        source_manifest_sha256=io.sha256_file(data_dir / MANIFEST), unseen_by=unseen_by)
    default = (stages.cross_domain_tasks_file(cfg, args.unseen_by, args.dataset, args.ways, args.shots)
               if args.unseen_by else stages.tasks_file(cfg, args.dataset, args.ways, args.shots))
    out = Path(args.out) if args.out else default
    io.write_json(out, task_list)
    excluded = f"; {len(unseen_by['excluded'])} test classes seen by {args.unseen_by} left out" if unseen_by else ""
    print(f"{len(task_list['episodes'])} tasks{excluded}, sha256 {task_list['sha256'][:12]} -> {out}")


def _check_cell_fits(split, dataset: str, split_name: str, ecfg: dict, ways: int, shots: int,
                     unseen_by: dict | None) -> None:
    """Ways against the classes left, shots + queries against their images: a ConfigError before sampling."""
    left_out = {entry["index"] for entry in (unseen_by or {}).get("excluded", [])}
    counts = [len(images) for c, images in enumerate(split.indices_by_class()) if c not in left_out]
    note = f" ({len(left_out)} left out as meta-train classes of {unseen_by['dataset']})" if left_out else ""
    if ways > len(counts):
        raise config_mod.ConfigError(f"{ways}-way tasks need {ways} classes; the {split_name} split of {dataset} "
                                     f"has {len(counts)}{note}; lower the ways")
    if counts and shots + ecfg["queries"] > min(counts):
        raise config_mod.ConfigError(f"{shots} shots + evaluate.queries {ecfg['queries']} = {shots + ecfg['queries']} "
                                     f"images per class, but the smallest class of the {split_name} split of "
                                     f"{dataset} has {min(counts)}; lower the shots or evaluate.queries")


def _device(cfg: dict) -> str:
    """Pin this job to one GPU of a multi-GPU machine (before CUDA starts), then resolve the device."""
    from metalr import devices

    global _gpu_claim
    if cfg["compute"]["device"] != "cpu":
        _gpu_claim = devices.pin_local_gpu(Path(stages.GPU_LOCKS))
    return devices.resolve_device(cfg["compute"]["device"])


def cmd_train(args: argparse.Namespace) -> None:
    from metalr.train.loop import train

    cfg = _load(args)
    run = _run(cfg, args.run)
    out_dir = Path(args.out_dir) if args.out_dir else stages.model_dir(cfg, run)
    log = train(cfg, run, stages.dataset_dir(cfg, run.dataset), out_dir, stages.checkpoint_file(cfg, run),
                progress=not args.no_progress, device=_device(cfg), val_tasks=_optional_path(args.val_tasks),
                tuned=_optional_path(args.tuned))
    print(f"{run.run_id}: final query accuracy (last {log['log_every']} iterations) "
          f"{log['query_accuracy'][-1]:.3f} -> {out_dir}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from metalr.evaluate.evaluate import evaluate
    from metalr.train.loop import MODEL_FILE

    cfg = _load(args)
    run = _run(cfg, args.run)
    test = args.test_dataset or run.dataset
    if test != run.dataset:
        config_mod.check_cross_domain_evaluation(cfg, run, test)
    model = Path(args.model) if args.model else stages.model_dir(cfg, run) / MODEL_FILE
    default_tasks = (stages.tasks_file(cfg, test, run.ways, run.shots) if test == run.dataset
                     else stages.cross_domain_tasks_file(cfg, run.dataset, test, run.ways, run.shots))
    tasks = Path(args.tasks) if args.tasks else default_tasks
    default_out = (stages.metrics_file(cfg, run) if test == run.dataset
                   else stages.cross_domain_metrics_file(cfg, run, test))
    out = Path(args.out) if args.out else default_out
    metrics = evaluate(cfg, run, model, tasks, stages.dataset_dir(cfg, test), out, progress=not args.no_progress,
                       device=_device(cfg), test_dataset=test, tuned=_optional_path(args.tuned))
    acc = metrics["accuracy"]
    print(f"{run.run_id} on {test}: accuracy {100 * acc['mean']:.2f} ± {100 * acc['ci95']:.2f} % "
          f"over {acc['n_tasks']} tasks -> {out}")


def _optional_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _tuned_run(cfg: dict, args: argparse.Namespace) -> config_mod.Run:
    """The trial run of ``--cell/--algorithm/--rule``, checked against the config's grid and tune block."""
    from metalr import tune

    if "tune" not in cfg:
        raise config_mod.ConfigError("the config has no tune block: there is nothing to tune")
    dataset, cell = args.cell.split("/")
    ways, shots = (int(v) for v in cell.removesuffix("s").split("w"))
    run = tune.trial_run(cfg, dataset, ways, shots, args.algorithm, args.rule)
    if (dataset, ways, shots, args.algorithm, args.rule) not in config_mod.tuned_cells(cfg):
        raise config_mod.ConfigError(f"{args.cell} {args.algorithm} {args.rule} is not tuned by this config; tuned: "
                                     f"{sorted(config_mod.tuned_cells(cfg))}")
    return run


def cmd_trial(args: argparse.Namespace) -> None:
    from metalr import tune

    cfg = _load(args)
    run = _tuned_run(cfg, args)
    out = Path(args.out) if args.out else stages.trial_file(cfg, run, args.trial)
    result = tune.run_trial(cfg, run, args.trial, stages.dataset_dir(cfg, run.dataset), Path(args.val_tasks),
                            stages.trial_checkpoint_file(cfg, run, args.trial), out, progress=not args.no_progress,
                            device=_device(cfg))
    acc = result["validation"]["accuracy"]
    print(f"trial {args.trial} of {run.rule} ({result['settings']}): validation accuracy "
          f"{100 * acc['mean']:.2f} ± {100 * acc['ci95']:.2f} % -> {out}")


def cmd_tune(args: argparse.Namespace) -> None:
    from metalr import tune

    cfg = _load(args)
    run = _tuned_run(cfg, args)
    out = Path(args.out) if args.out else stages.chosen_file(cfg, run)
    chosen = tune.select([Path(p) for p in args.trials], out)
    print(f"{args.cell} {args.algorithm} {args.rule}: trial {chosen['trial']} of {chosen['budget']['trials']} "
          f"({chosen['settings']}), validation accuracy {100 * chosen['validation_accuracy']:.2f} % -> {out}")


def cmd_report(args: argparse.Namespace) -> None:
    from metalr.report import verify
    from metalr.report.build import build_report

    cfg = _load(args)
    runs = config_mod.grid_runs(cfg)
    out_dir = Path(args.out_dir) if args.out_dir else stages.report_dir(cfg)
    verify.check_inputs(stages.all_metrics_files(cfg), Path(cfg["data"]["root"]))  # before any number is read
    written = build_report(cfg, _sources(args, cfg), stages.all_metrics_files(cfg),
                           [stages.model_dir(cfg, r) for r in runs], out_dir)
    print(f"report: {len(written)} files -> {out_dir}")


def cmd_tuning_report(args: argparse.Namespace) -> None:
    from metalr.report.tuning import build_tuning

    cfg = _load(args)
    out_dir = Path(args.out_dir) if args.out_dir else stages.report_dir(cfg)
    written = build_tuning(cfg, [Path(p) for p in args.chosen], [Path(p) for p in args.trials],
                           [Path(p) for p in args.costs], out_dir)
    print(f"tuning report: {len(written)} files -> {out_dir}")


def cmd_results_md(args: argparse.Namespace) -> None:
    from metalr import io
    from metalr.report import summary

    cfg = _load(args)
    chosen = [stages.chosen_file(cfg, config_mod.Run(d, w, s, a, r, 0)) for d, w, s, a, r in config_mod.tuned_cells(cfg)]
    wall = summary.wall_clock(Path(args.time_file)) if args.time_file else None
    command = " ".join(["metalr results-md", *(f"--configfile {f}" for f in args.configfile),
                        *(["--time-file <GNU time -v output>"] if args.time_file else [])])
    block = summary.results_markdown(cfg, stages.report_dir(cfg), chosen, wall, command)
    out = Path(args.out) if args.out else Path("docs") / "results" / f"{cfg['experiment']}.md"
    io.write_text(out, f"# Results of experiment `{cfg['experiment']}`\n\n" + block)
    print(f"results -> {out}")
    if args.readme:
        readme = Path(args.readme)
        io.write_text(readme, summary.replace_block(readme.read_text(encoding="utf-8"), cfg["experiment"], block, readme))
        print(f"results -> {readme} (between its results:{cfg['experiment']} markers)")


def cmd_pdf(args: argparse.Namespace) -> None:
    from metalr.report.pdf import compile_appendix

    cfg = _load(args)
    gen = Path(args.gendir) if args.gendir else stages.report_dir(cfg)
    out = Path(args.out) if args.out else gen / "appendix.pdf"
    compile_appendix(Path(args.appendix), gen, out)
    print(f"appendix -> {out}")


def cmd_dvc_yaml(args: argparse.Namespace) -> None:
    from metalr import io
    from metalr.dvcgen import render

    files = [str(config_mod.default_config().relative_to(config_mod.project_root())), *args.configfile]
    io.write_text(args.out, render(files))
    print(f"dvc stages for {files} -> {args.out}")


def cmd_bench(args: argparse.Namespace) -> None:
    import itertools

    from metalr import bench, devices

    device = devices.resolve_device(args.device)
    cpu_allocator = args.cpu_allocator or config_mod.load([config_mod.default_config()])["compute"]["cpu_allocator"]
    cases = [bench.Case(shape, shots, algorithm, rule, filters=args.filters, backbone=backbone)
             for shape, shots, backbone, algorithm, rule
             in itertools.product(args.shapes, args.shots, args.backbones, args.algorithms, args.rules)]
    print(f"benchmark on {device}: {len(cases)} cases, {args.repeats} timed iterations each after "
          f"{max(args.warmup, 1)} warm-up (the first counts the FLOPs); metalr with cpu_allocator {cpu_allocator}")
    bench.run(cases, device, args.repeats, args.warmup, args.eval_tasks, Path(args.out), cpu_allocator)
    print(f"-> {args.out}")


def cmd_scaling(args: argparse.Namespace) -> None:
    from metalr import devices, scaling

    cfg = _load(args)
    device = devices.resolve_device(args.device)
    out = Path(args.out) if args.out else stages.scaling_file(cfg)
    print(f"scaling study on {device}: {len(scaling.cases(cfg['analysis']['scaling']))} points")
    scaling.run(cfg, device, out)
    print(f"-> {out}")


def cmd_scaling_figure(args: argparse.Namespace) -> None:
    from metalr.report import scaling as scaling_report

    cfg = _load(args)
    source = Path(args.scaling_json) if args.scaling_json else stages.scaling_file(cfg)
    out_dir = Path(args.out_dir) if args.out_dir else stages.report_dir(cfg)
    written = scaling_report.write(source, out_dir)
    print(f"scaling figure and macros -> {', '.join(map(str, written))}")


def cmd_fidelity(args: argparse.Namespace) -> None:
    from metalr.analysis import fidelity

    cfg = _load(args)
    out = Path(args.out) if args.out else stages.analysis_dir(cfg) / "fidelity.json"
    result = fidelity.run(cfg, stages.dataset_dir(cfg, cfg["analysis"]["fidelity"]["dataset"]), out)
    print(f"gradient fidelity: {len(result['results'])} comparisons -> {out}")


def cmd_cost(args: argparse.Namespace) -> None:
    from metalr.analysis import cost

    cfg = _load(args)
    out = Path(args.out) if args.out else stages.analysis_dir(cfg) / "cost.json"
    report = cost.run(cfg, out)
    print(f"cost: {len(report['results'])} algorithm x rule cases -> {out}")


def cmd_analyses(args: argparse.Namespace) -> None:
    from metalr.report.analyses import build_analyses
    from metalr.train.rates import RATES_FILE

    cfg = _load(args)
    analysis = stages.analysis_dir(cfg)
    out_dir = Path(args.out_dir) if args.out_dir else stages.report_dir(cfg)
    written = build_analyses(cfg, analysis / "fidelity.json", analysis / "cost.json",
                             [stages.model_dir(cfg, r) / RATES_FILE for r in config_mod.grid_runs(cfg)], out_dir)
    print(f"analyses: {len(written)} files -> {out_dir}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metalr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_text: str, resolved: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--configfile", action="append", default=[], metavar="YAML",
                       help="config file layered over config/config.yaml (repeatable, later wins)")
        if resolved:
            p.add_argument("--config", metavar="YAML", help="a resolved config (results/<experiment>/config.yaml, "
                           "written by `metalr config`), read alone: what the workflow's jobs use")
        p.set_defaults(func=func)
        return p

    add("validate", cmd_validate, "validate the config and list the grid's runs")
    add("config", cmd_config, "write the resolved config and the source of each value to results/<experiment>/",
        resolved=False)
    p = add("data", cmd_data, "build a dataset's preprocessed arrays")
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", help="output folder (default: <data.root>/<dataset>)")
    p = add("tasks", cmd_tasks, "freeze the list of evaluation tasks")
    p.add_argument("--dataset", required=True)
    p.add_argument("--ways", type=int, required=True)
    p.add_argument("--shots", type=int, required=True)
    p.add_argument("--split", choices=["test", "val"], default="test",
                   help="test: evaluate.tasks tasks of evaluate.split; val: evaluate.val_tasks of the meta-val classes")
    p.add_argument("--unseen-by", metavar="DATASET",
                   help="a cross-domain task list: leave out the test classes that are meta-train classes of "
                        "DATASET (same WordNet id)")
    p.add_argument("--out")
    for name, func, text in (("train", cmd_train, "meta-train one run"), ("evaluate", cmd_evaluate, "evaluate one run")):
        p = add(name, func, text)
        p.add_argument("--run", required=True, help="<dataset>/<ways>w<shots>s/<algorithm>/<rule>/seed<seed>")
        p.add_argument("--no-progress", action="store_true")
        p.add_argument("--tuned", help="the run's tuning result (chosen.json), when the config has a tune block")
        if name == "train":
            p.add_argument("--out-dir")
            p.add_argument("--val-tasks", help="the cell's validation task list (train.validate_every > 0)")
        else:
            p.add_argument("--model")
            p.add_argument("--tasks")
            p.add_argument("--out")
            p.add_argument("--test-dataset", help="the dataset of the test tasks when it is not the training "
                           "dataset (a cross_domain evaluation of the config)")
    for name, func, text in (("trial", cmd_trial, "one tuning trial: a short meta-training scored on validation tasks"),
                             ("tune", cmd_tune, "pick the best tuning trial of a cell, algorithm and rule")):
        p = add(name, func, text)
        p.add_argument("--cell", required=True, help="<dataset>/<ways>w<shots>s")
        p.add_argument("--algorithm", required=True)
        p.add_argument("--rule", required=True)
        p.add_argument("--out")
        if name == "trial":
            p.add_argument("--trial", type=int, required=True, help="0-based index into tune.trials")
            p.add_argument("--val-tasks", required=True, help="the cell's validation task list")
            p.add_argument("--no-progress", action="store_true")
        else:
            p.add_argument("--trials", nargs="+", required=True, help="every trial file of the cell, algorithm and rule")
    p = add("report", cmd_report, "aggregate the results into tables, figures and macros")
    p.add_argument("--out-dir")
    p = add("tuning-report", cmd_tuning_report, "the appendix's tuning section from the tuning results")
    p.add_argument("--chosen", nargs="+", required=True, help="every chosen.json of the experiment")
    p.add_argument("--trials", nargs="+", required=True, help="every trial file they name")
    p.add_argument("--costs", nargs="+", required=True, help="every trial's cost file")
    p.add_argument("--out-dir")
    p = add("results-md", cmd_results_md, "the experiment's measured results as Markdown, from its report and "
                                          "tuning outputs (docs/results/<experiment>.md; --readme: into a README too)")
    p.add_argument("--time-file", help="the output of GNU `time -v` around the whole snakemake run (its wall time)")
    p.add_argument("--out")
    p.add_argument("--readme", help="a Markdown file with the experiment's results markers (e.g. README.md)")
    p = add("pdf", cmd_pdf, "compile the appendix with latexmk")
    p.add_argument("--appendix", default="paper/appendix.tex")
    p.add_argument("--gendir")
    p.add_argument("--out")
    p = sub.add_parser("bench", help="time metalr against the reference per-task loop (JSON out)")
    p.set_defaults(func=cmd_bench)
    p.add_argument("--out", default="results/bench/bench.json")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--shapes", nargs="+", default=["cifar_fs", "mini_imagenet"], choices=["cifar_fs", "mini_imagenet"])
    p.add_argument("--shots", nargs="+", type=int, default=[1, 5])
    p.add_argument("--algorithms", nargs="+", default=["maml", "fomaml", "anil"])
    p.add_argument("--rules", nargs="+", default=["fixed", "mlplr"])
    p.add_argument("--filters", type=int, default=64, help="base width (model.filters)")
    p.add_argument("--backbones", "--backbone", nargs="+", default=["conv4"], choices=sorted(BACKBONES),
                   help="backbones timed (the reference loop implements conv4 only)")
    p.add_argument("--repeats", type=int, default=5, help="timed meta-iterations per case (median, min, max)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--cpu-allocator", choices=["retain", "system"],
                   help="metalr's CPU allocator setting (default: compute.cpu_allocator of config/config.yaml); "
                        "the reference loop runs with the system's")
    p.add_argument("--eval-tasks", type=int, default=600,
                   help="evaluation tasks timed; fewer than 600 are extrapolated to 600 and marked so")
    p = add("scaling", cmd_scaling, "time and memory per meta-iteration against inner steps, shots and task batch "
                                    "(analysis.scaling; JSON out)")
    p.add_argument("--out", help="default: results/<experiment>/analysis/scaling.json")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p = add("scaling-figure", cmd_scaling_figure, "the scaling study's figure and LaTeX macros")
    p.add_argument("--scaling-json", help="default: results/<experiment>/analysis/scaling.json")
    p.add_argument("--out-dir", help="default: paper/generated/<experiment>")
    p = add("fidelity", cmd_fidelity, "FOMAML's and iMAML's meta-gradients against exact MAML (analysis.fidelity)")
    p.add_argument("--out", help="results JSON (default: results/<experiment>/analysis/fidelity.json)")
    p = add("cost", cmd_cost, "time every algorithm x rule of analysis.cost with metalr.bench")
    p.add_argument("--out", help="results JSON (default: results/<experiment>/analysis/cost.json)")
    p = add("analyses", cmd_analyses, "the appendix's fidelity and step-size figures, cost table and macros")
    p.add_argument("--out-dir")
    p = add("dvc-yaml", cmd_dvc_yaml, "write dvc.yaml: the workflow's stages for DVC")
    p.add_argument("--out", default="dvc.yaml")
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    from metalr import io
    from metalr.data.arrays import DatasetIntegrityError
    from metalr.data.download import DownloadError
    from metalr.data.extract import CorruptArchive, UnsafeArchive
    from metalr.data.images import UnreadableImage
    from metalr.data.prepare import NotEnoughSpace
    from metalr.data.splits import SplitFileError
    from metalr.evaluate.evaluate import NonFiniteEvaluation
    from metalr.evaluate.validation import ValidationError
    from metalr.report.build import IncompleteReport
    from metalr.report.pdf import LatexBuildError, LatexNotInstalled
    from metalr.report.verify import ResultMismatch
    from metalr.train.checkpoint import CheckpointMismatch
    from metalr.train.loop import DivergenceError, LogsTooLarge

    return KNOWN_ERRORS + (DatasetIntegrityError, DownloadError, CorruptArchive, UnsafeArchive, SplitFileError,
                           CheckpointMismatch, DivergenceError, FileNotFoundError, LatexNotInstalled, LatexBuildError,
                           io.DiskFullError, io.UnsafeTarget, io.UnreadableFile, io.UnsafeFile, io.HashMismatch,
                           io.Busy, LogsTooLarge, NotEnoughSpace, NonFiniteEvaluation, UnreadableImage,
                           IncompleteReport, ResultMismatch, ValidationError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except _known_errors() as exc:
        print(f"metalr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
