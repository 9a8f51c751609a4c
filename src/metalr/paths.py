"""Where every artifact lives. The Snakefile, dvc.yaml and the CLI all use these layouts.

Every path built here is checked to stay inside its root (results/, work/ or paper/generated/ of the
working directory; data.root for datasets): config validation already restricts the names that go into
them (experiment, datasets, algorithms, rules), and this is the second guard.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from metalr.config import ConfigError, Run

RESULTS = Path("results")
WORK = Path("work")
GENERATED = Path("paper") / "generated"


def inside(root: Path, *parts: str) -> Path:
    """``root / parts``, refused (ConfigError) unless it lies strictly below ``root``."""
    path = Path(root, *parts)
    if Path(root).resolve() not in path.resolve().parents:
        raise ConfigError(f"output path {path} is not inside {root}/: a name in it ({'/'.join(parts)}) leaves the "
                          f"folder; use plain names (config key experiment: letters, digits, '_', '-', '.')")
    return path


def tasks_file(cfg: Mapping[str, Any], dataset: str, ways: int, shots: int) -> Path:
    return inside(RESULTS, cfg["experiment"], "tasks", dataset, f"{ways}w{shots}s.json")


def cross_domain_tasks_file(cfg: Mapping[str, Any], train_dataset: str, test_dataset: str, ways: int,
                            shots: int) -> Path:
    """The test tasks of ``test_dataset`` drawn from the classes ``train_dataset``'s meta-train split lacks."""
    return inside(RESULTS, cfg["experiment"], "tasks", test_dataset, f"{ways}w{shots}s-unseen-by-{train_dataset}.json")


def model_dir(cfg: Mapping[str, Any], run: Run) -> Path:
    return inside(RESULTS, cfg["experiment"], "models", run.dataset, run.cell, run.name)


def metrics_file(cfg: Mapping[str, Any], run: Run) -> Path:
    return inside(RESULTS, cfg["experiment"], "metrics", run.dataset, run.cell, f"{run.name}.json")


def checkpoint_file(cfg: Mapping[str, Any], run: Run) -> Path:
    return inside(WORK, cfg["experiment"], "checkpoints", run.dataset, run.cell, f"{run.name}.pt")


def report_dir(cfg: Mapping[str, Any]) -> Path:
    return inside(GENERATED, cfg["experiment"])


def cross_domain_metrics_file(cfg: Mapping[str, Any], run: Run, test_dataset: str) -> Path:
    return inside(RESULTS, cfg["experiment"], "cross_domain", test_dataset, run.dataset, run.cell, f"{run.name}.json")


def all_metrics_files(cfg: Mapping[str, Any]) -> list[Path]:
    """Every evaluation the report reads: each grid run in-domain, then the cross-domain ones."""
    from metalr.config import cross_domain_evaluations, grid_runs

    return ([metrics_file(cfg, run) for run in grid_runs(cfg)]
            + [cross_domain_metrics_file(cfg, run, test) for run, test in cross_domain_evaluations(cfg)])


def scaling_file(cfg: Mapping[str, Any]) -> Path:
    return inside(RESULTS, cfg["experiment"], "analysis", "scaling.json")


def analysis_dir(cfg: Mapping[str, Any]) -> Path:
    return inside(RESULTS, cfg["experiment"], "analysis")
