"""Where every artifact lives. The Snakefile, dvc.yaml and the CLI all use these layouts."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from metalr.config import Run

RESULTS = Path("results")
WORK = Path("work")
GENERATED = Path("paper") / "generated"


def tasks_file(cfg: Mapping[str, Any], dataset: str, ways: int, shots: int, split: str = "test") -> Path:
    """The frozen test task list of a cell, or (``split="val"``) its validation task list."""
    folder = RESULTS / cfg["experiment"] / "tasks" / ("val" if split == "val" else "")
    return folder / dataset / f"{ways}w{shots}s.json"


def tuning_dir(cfg: Mapping[str, Any], run: Run) -> Path:
    return RESULTS / cfg["experiment"] / "tuning" / run.dataset / run.cell / run.algorithm / run.rule


def trial_file(cfg: Mapping[str, Any], run: Run, trial: int) -> Path:
    return tuning_dir(cfg, run) / f"trial{trial}.json"


def chosen_file(cfg: Mapping[str, Any], run: Run) -> Path:
    return tuning_dir(cfg, run) / "chosen.json"


def trial_checkpoint_file(cfg: Mapping[str, Any], run: Run, trial: int) -> Path:
    return WORK / cfg["experiment"] / "checkpoints" / "tuning" / run.dataset / run.cell / run.algorithm / run.rule / f"trial{trial}.pt"


def model_dir(cfg: Mapping[str, Any], run: Run) -> Path:
    return RESULTS / cfg["experiment"] / "models" / run.dataset / run.cell / run.name


def metrics_file(cfg: Mapping[str, Any], run: Run) -> Path:
    return RESULTS / cfg["experiment"] / "metrics" / run.dataset / run.cell / f"{run.name}.json"


def checkpoint_file(cfg: Mapping[str, Any], run: Run) -> Path:
    return WORK / cfg["experiment"] / "checkpoints" / run.dataset / run.cell / f"{run.name}.pt"


def report_dir(cfg: Mapping[str, Any]) -> Path:
    return GENERATED / cfg["experiment"]


def cross_domain_metrics_file(cfg: Mapping[str, Any], run: Run, test_dataset: str) -> Path:
    return RESULTS / cfg["experiment"] / "cross_domain" / test_dataset / run.dataset / run.cell / f"{run.name}.json"


def all_metrics_files(cfg: Mapping[str, Any]) -> list[Path]:
    """Every evaluation the report reads: each grid run in-domain, then the cross-domain ones."""
    from metalr.config import cross_domain_evaluations, grid_runs

    return ([metrics_file(cfg, run) for run in grid_runs(cfg)]
            + [cross_domain_metrics_file(cfg, run, test) for run, test in cross_domain_evaluations(cfg)])


def scaling_file(cfg: Mapping[str, Any]) -> Path:
    return RESULTS / cfg["experiment"] / "analysis" / "scaling.json"


def analysis_dir(cfg: Mapping[str, Any]) -> Path:
    return RESULTS / cfg["experiment"] / "analysis"
