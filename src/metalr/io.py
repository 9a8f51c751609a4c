"""Atomic file writes, content hashing, and the guards around them.

Every artifact is written to a temporary file in the destination folder, flushed and fsynced, then
moved into place with ``os.replace``: a reader (or a killed job) never sees a half-written file. A
temporary carries its writer's process id, so the next writer of the same target removes the ones a
killed process left (never a live writer's). A folder is replaced whole only when the stage asking
built it before (``atomic_dir``'s owner check); the working directory and the folders above it never.
A full disk or a file-size limit is reported in one line with the path, the bytes needed and the
bytes free.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

CHUNK = 1 << 20
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


class DiskFullError(OSError):
    """A write failed for lack of space or a file-size limit; the message names the path and the bytes."""


class UnsafeTarget(RuntimeError):
    """A stage was asked to replace a folder it did not build (or the working directory, or one above it)."""


class HashMismatch(RuntimeError):
    """A file differs from the sha256 recorded for it; the message names the file and the stage to rerun."""


class UnsafeFile(RuntimeError):
    """A data file carries code (a pickled object of a type not allowed); it was refused without running it."""


class UnreadableFile(RuntimeError):
    """A file the pipeline reads is truncated, damaged or not in its format; the message names it and the fix."""


class Busy(RuntimeError):
    """Another live process holds the lock of the same work; the message names its process id."""


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``path`` (created if needed, holding our pid) for the block.

    The operating system releases it when the process ends, however it ends, so a killed holder
    never blocks the next run. Raises Busy, naming ``what`` and the holder's pid, when a live process
    holds it. The file itself stays (removing a lock file races with the next taker).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise Busy(f"{what} is already running in process {holder} (it holds the lock {path}); wait for it "
                       f"to finish, or stop it (kill {holder}) and rerun") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _disk_full_message(path: Path, needed: int | None, written: int, exc: OSError) -> str:
    free = shutil.disk_usage(path.parent).free if path.parent.exists() else 0
    need = f"{needed} bytes" if needed is not None else f"more than the {written} bytes written so far"
    cause = "the file-size limit (ulimit -f) stops it" if exc.errno == errno.EFBIG else (
        "the disk quota is used up" if exc.errno == errno.EDQUOT else "no space left on the device")
    return (f"cannot write {path}: it needs {need}, {free} bytes are free on its file system ({cause}); "
            f"free some space or raise the limit, then rerun")


def _temporary_pid(name: str, leftover: str) -> int | None:
    """The writer's pid in a temporary ``.<name>.<pid>.<random>.tmp``; -1 for the pid-less form of older
    versions (``.<name>.<random>.tmp``); None when ``leftover`` is not a temporary of ``name`` at all."""
    match = re.fullmatch(rf"\.{re.escape(name)}\.(?:(\d+)\.)?[^.]+\.tmp", leftover)
    if match is None:
        return None
    return int(match.group(1)) if match.group(1) else -1


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    ``size`` (bytes, when known) is what a full-disk error reports as needed. Raises DiskFullError
    (ENOSPC, EFBIG, EDQUOT) naming the path, the bytes needed and the bytes free.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; published artifacts get the usual umask-based mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        written = tmp_path.stat().st_size if tmp_path.exists() else 0
        tmp_path.unlink(missing_ok=True)
        if exc.errno in DISK_FULL_ERRNOS:
            error = DiskFullError(_disk_full_message(path, size, written, exc))
            error.errno = exc.errno
            raise error from exc
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Delete the temporaries of ``path`` whose writer is dead (SIGKILL skips ``atomic_path``'s cleanup).

    Only ``path``'s own, and only those of processes that no longer exist, so a live writer (of this
    or any other file in a shared folder) is never disturbed; in a DVC-tracked output folder a
    leftover would otherwise be hashed with it.
    """
    path = Path(path)
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = _temporary_pid(path.name, tmp.name)
        if pid is not None and (pid < 0 or not pid_alive(pid)):
            tmp.unlink(missing_ok=True)


def remove_stale_folders(path: str | os.PathLike) -> None:
    """Delete the ``.<name>.tmp-<pid>`` folders that ``atomic_dir`` runs of dead processes left beside ``path``."""
    path = Path(path)
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        match = re.fullmatch(rf"\.{re.escape(path.name)}\.tmp-(\d+)", tmp.name)
        if match and tmp.is_dir() and not pid_alive(int(match.group(1))):
            shutil.rmtree(tmp)


def check_replaceable(path: Path, is_ours: Callable[[Path], bool], ours: str) -> None:
    """Refuse to replace ``path`` unless it is absent, an empty folder, or a folder ``is_ours`` recognises
    (``ours`` describes what it looks for); the working directory and every folder above it are always
    refused. Raises UnsafeTarget naming the folder and the fix."""
    resolved, cwd = path.resolve(), Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise UnsafeTarget(f"refusing to replace {path}: it is the working directory or a folder above it, and "
                           f"replacing it would delete everything below; give a new folder, e.g. data/<dataset>")
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink() and (not any(path.iterdir()) or is_ours(path)):
        return
    raise UnsafeTarget(f"refusing to replace {path}: it exists and is not {ours}, so replacing it would delete "
                       f"what it holds; move it away (or delete it yourself) or give another folder")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, is_ours: Callable[[Path], bool], ours: str) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path`` whole, on
    error it is removed: a reader never sees a half-built folder.

    ``path`` is replaced only when ``check_replaceable`` allows it (checked before and again just
    before the swap): a folder this stage built before, recognised by ``is_ours`` (``ours`` says what
    it looks for). Temporary folders of dead processes beside ``path`` are removed first.
    """
    path = Path(path)
    check_replaceable(path, is_ours, ours)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_folders(path)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        check_replaceable(path, is_ours, ours)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path, size=len(data)) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def canonical_json(obj: Any) -> str:
    """Stable JSON text: sorted keys, fixed separators, trailing newline (byte-identical reruns)."""
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, canonical_json(obj))


def read_json(path: str | os.PathLike, remedy: str = "rebuild it with the stage that writes it") -> Any:
    """Parse a JSON file; a truncated or damaged one raises UnreadableFile naming it and ``remedy``."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnreadableFile(f"{path} is not readable JSON ({exc}): it is truncated or damaged; {remedy}") from exc


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    return sha256_bytes(canonical_json(obj).encode("utf-8"))
