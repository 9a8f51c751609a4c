"""Resumable, verified downloads with the standard library.

A download goes to ``<name>.part`` beside its destination and is resumed with an HTTP Range request
after a dropped connection; a server that ignores Range (answers 200 to a ranged request) makes us
start the file over. Transient failures (connection errors, 5xx, 429) are retried with exponential
backoff; refusals (401, 403, 404, 410) are not, and raise ``DownloadRefused`` with the manual
download instructions the caller gives. The checksum is always verified before the file is renamed
into place: a file that fails is moved aside to ``<name>.corrupt-<hash8>`` and named in the error, so
nothing half-written or unverified ever sits at the destination.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)

CHUNK = 1 << 16
USER_AGENT = "metalr-downloader/1 (+https://github.com/; research reproduction)"
REFUSED_STATUSES = frozenset({401, 403, 404, 410})
SPACE_MARGIN = 64 << 20  # keep this much free beyond the file itself


class DownloadError(RuntimeError):
    """A file could not be fetched or verified; the message says what to do."""


class DownloadRefused(DownloadError):
    """The server refused the download (401/403/404/410): retrying will not help."""


class ChecksumMismatch(DownloadError):
    """A file's digest differs from the expected one; the file was moved aside."""


class InsufficientSpace(DownloadError):
    """The destination's file system has too little free space for the file."""


@dataclass(frozen=True)
class Checksum:
    algorithm: str  # "md5" or "sha256"
    value: str

    def __post_init__(self) -> None:
        if self.algorithm not in ("md5", "sha256"):
            raise ValueError(f"unsupported checksum algorithm {self.algorithm!r}; use md5 or sha256")

    def __str__(self) -> str:
        return f"{self.algorithm} {self.value}"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # total tries, the first included
    initial_delay_s: float = 2.0  # wait before the second try; doubled each time
    max_delay_s: float = 60.0
    timeout_s: float = 60.0  # socket timeout per read

    def delay(self, failures: int) -> float:
        return min(self.max_delay_s, self.initial_delay_s * 2 ** (failures - 1))


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def set_aside(path: Path) -> Path:
    """Rename a file that failed verification to ``<name>.corrupt-<sha256[:8]>`` and return the new path."""
    aside = path.with_name(f"{path.name.removesuffix('.part')}.corrupt-{file_digest(path, 'sha256')[:8]}")
    os.replace(path, aside)
    return aside


def verify_or_set_aside(path: Path, checksum: Checksum, what: str) -> None:
    actual = file_digest(path, checksum.algorithm)
    if actual != checksum.value:
        aside = set_aside(path)
        raise ChecksumMismatch(
            f"{what}: {checksum.algorithm} is {actual}, expected {checksum.value}; the file was moved to {aside}. "
            "Delete it and retry; if it fails again the source changed (check the registry's checksum)."
        )


def check_free_space(folder: Path, needed_bytes: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed_bytes + SPACE_MARGIN:
        raise InsufficientSpace(
            f"{folder} has {free / 2**30:.2f} GiB free, the download needs {needed_bytes / 2**30:.2f} GiB "
            f"(+{SPACE_MARGIN >> 20} MiB margin); free some space or point the download folder elsewhere."
        )


class _Transient(Exception):
    """A failure worth retrying."""


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _resumes_at(response, offset: int) -> bool:
    """Whether a response to a request for ``bytes=offset-`` continues the .part file."""
    if not offset or response.status != 206:
        return False
    content_range = response.headers.get("Content-Range", "")  # "bytes 100-199/200"
    return content_range.startswith(f"bytes {offset}-")


def _expected_total(response, offset: int, appending: bool) -> int | None:
    length = response.headers.get("Content-Length")
    if length is None:
        return None
    return int(length) + (offset if appending else 0)


def _fetch_once(url: str, part: Path, policy: RetryPolicy, progress: bool, manual: str) -> None:
    """One attempt: resume or restart ``part``; raise _Transient on failures worth retrying."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, policy.timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return  # the .part already holds every byte; the checksum decides
        if exc.code in REFUSED_STATUSES:
            raise DownloadRefused(f"{url} answered HTTP {exc.code} {exc.reason}.\n{manual}") from exc
        if exc.code == 429 or exc.code >= 500:
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"{url} answered HTTP {exc.code} {exc.reason}.\n{manual}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from exc
    with response:
        appending = _resumes_at(response, offset)
        if offset and not appending:
            log.warning("%s ignored the Range request; downloading %s from the start", url, part.name)
        total = _expected_total(response, offset, appending)
        if total is not None:
            check_free_space(part.parent, total - (offset if appending else 0))
        written = offset if appending else 0
        try:
            with open(part, "ab" if appending else "wb") as fh, tqdm(
                total=total, initial=written, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name.removesuffix(".part"), disable=not progress, leave=False,
            ) as bar:
                while block := response.read(CHUNK):
                    fh.write(block)
                    written += len(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException, socket.timeout) as exc:
            raise _Transient(f"connection lost after {written} bytes: {exc}") from exc
    if total is not None and written < total:
        raise _Transient(f"connection closed after {written} of {total} bytes")


def download(
    url: str,
    dest: str | os.PathLike,
    checksum: Checksum,
    *,
    size: int | None = None,
    policy: RetryPolicy = RetryPolicy(),
    manual: str = "",
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify it, rename it into place."""
    dest = Path(dest)
    if dest.exists():
        verify_or_set_aside(dest, checksum, str(dest))
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if size is not None:
        check_free_space(dest.parent, size - (part.stat().st_size if part.exists() else 0))
    failures = 0
    while True:
        try:
            _fetch_once(url, part, policy, progress, manual)
            break
        except _Transient as exc:
            failures += 1
            if failures >= policy.attempts:
                raise DownloadError(
                    f"{url}: gave up after {failures} attempts ({exc}); the partial file {part} is kept and "
                    f"the next run resumes it.\n{manual}"
                ) from exc
            delay = policy.delay(failures)
            log.warning("%s: %s; retrying in %.1f s (attempt %d of %d)", url, exc, delay, failures + 1, policy.attempts)
            time.sleep(delay)
    verify_or_set_aside(part, checksum, f"download of {url}")
    os.replace(part, dest)
    return dest
