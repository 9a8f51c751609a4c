"""Resumable training state, kept outside the workflow's declared outputs, and safe loading of torch files.

Snakemake deletes a failed job's outputs and DVC deletes a stage's outputs before rerunning it, so
checkpoints live under ``work/`` and are removed once the final outputs are in place.

Models and checkpoints are read with ``torch.load(weights_only=True)``: tensors, numbers, strings and
plain containers only, so a file carrying a pickled object (whose ``__reduce__`` could run anything)
is refused, named, and never run. Training writes nothing else: the checkpoint's numpy logs travel as
tensors.
"""
from __future__ import annotations

import io as _io
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metalr import io

ARRAY_KEYS = ("lambdas", "losses", "accuracies", "outer_lrs")  # numpy logs, stored as tensors


class CheckpointMismatch(RuntimeError):
    """A checkpoint was made with a different config; resuming from it would mix two runs."""


def torch_bytes(obj: Any) -> bytes:
    """``torch.save`` into memory, with the same bytes for the same object."""
    # Through a file object, not a path: torch names the archive's records after the file it is
    # given, so saving to a (randomly named) temporary file would differ in its bytes each time.
    buffer = _io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def write_torch(path: Path, obj: Any) -> str:
    """``torch.save`` atomically; returns the sha256 of the bytes written."""
    data = torch_bytes(obj)
    io.write_bytes(path, data)
    return io.sha256_bytes(data)


def read_torch(path: Path, remedy: str, device: str = "cpu") -> Any:
    """``torch.load(weights_only=True)``: raises io.UnsafeFile when the file holds anything but tensors,
    numbers, strings and plain containers (without running it), io.UnreadableFile when it is truncated
    or damaged (both naming ``path`` and ``remedy``), FileNotFoundError when it is absent."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {remedy}")
    try:
        return torch.load(path, weights_only=True, map_location=device)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            found = re.search(r"GLOBAL ([\w.]+)", str(exc))
            reason = f"global {found.group(1)}" if found else "a type outside tensors and plain containers"
            raise io.UnsafeFile(f"{path} holds a pickled object that is not a tensor or a plain container "
                                f"({reason}); refused without running it. "
                                f"metalr never writes such files: do not use this one, {remedy}") from exc
        raise io.UnreadableFile(f"{path} cannot be read ({exc}): it is truncated or damaged; {remedy}") from exc
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise io.UnreadableFile(f"{path} cannot be read ({first}): it is truncated or damaged; {remedy}") from exc


def save(path: Path, state: dict[str, Any]) -> None:
    write_torch(path, {**state, **{key: torch.from_numpy(np.ascontiguousarray(state[key])) for key in ARRAY_KEYS}})


def set_aside(path: Path) -> Path:
    """Move a damaged checkpoint to ``<name>.corrupt-<n>`` beside it (never deleted); returns the new path."""
    n = 1
    while (target := path.with_name(f"{path.name}.corrupt-{n}")).exists():
        n += 1
    path.replace(target)
    return target


def load(path: Path, expected_config: dict, device: str = "cpu") -> dict[str, Any] | None:
    """The saved training state, or None when there is none. A truncated or damaged checkpoint is moved
    aside with a warning (training restarts); one holding code raises io.UnsafeFile; one made with
    another config raises CheckpointMismatch."""
    if not path.exists():
        return None
    try:
        state = read_torch(path, "delete it to start this run afresh", device)
        if not isinstance(state, dict) or not {"config", "iteration", *ARRAY_KEYS} <= set(state):
            raise io.UnreadableFile(f"{path} is not a metalr training checkpoint")
    except io.UnreadableFile as exc:
        moved = set_aside(path)
        print(f"warning: {exc}. It was moved to {moved}; training starts afresh.", file=sys.stderr)
        return None
    if state["config"] != expected_config:
        differing = sorted(_differing_keys(state["config"], expected_config))
        raise CheckpointMismatch(
            f"checkpoint {path} was made with a different config (differing keys: {differing}); "
            f"delete it to start this run afresh"
        )
    return {**state, **{key: state[key].numpy() for key in ARRAY_KEYS}}


def _differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        return [k for key in keys for k in _differing_keys(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]
