"""Resumable training state, kept outside the workflow's declared outputs.

Snakemake deletes a failed job's outputs and DVC deletes a stage's outputs before rerunning it, so
checkpoints live under ``work/`` and are removed once the final outputs are in place.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from metalr import io


class CheckpointMismatch(RuntimeError):
    """A checkpoint was made with a different config; resuming from it would mix two runs."""


def write_torch(path: Path, obj: Any) -> None:
    """``torch.save`` atomically, with the same bytes for the same object."""
    # Through a file object, not a path: torch names the archive's records after the file it is
    # given, and the temporary file's name is random, so each save would differ in its bytes.
    with io.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def save(path: Path, state: dict[str, Any]) -> None:
    write_torch(path, state)


def load(path: Path, expected_config: dict, device: str = "cpu") -> dict[str, Any] | None:
    if not path.exists():
        return None
    state = torch.load(path, weights_only=False, map_location=device)
    if state["config"] != expected_config:
        differing = sorted(_differing_keys(state["config"], expected_config))
        raise CheckpointMismatch(
            f"checkpoint {path} was made with a different config (differing keys: {differing}); "
            f"delete it to start this run afresh"
        )
    return state


def _differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        return [k for key in keys for k in _differing_keys(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]
