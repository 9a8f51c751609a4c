"""Get a dataset's verified raw archives: from a mirror folder first, else from the network.

Mirrors (config ``data.mirror``: a list of folders, relative paths taken from the working directory,
which is the repository root under Snakemake and DVC) are searched in order, each as
``<mirror>/<dataset>/<file>`` then ``<mirror>/<file>``. A mirror copy is used in place (never copied
or moved: mirrors may be read-only) when its digest equals the registry's checksum, or, failing that,
when the ``SHA256SUMS`` or ``MD5SUMS`` file beside it (``md5sum`` format) lists it with its actual
digest; the second case is logged as a warning, since the bytes then differ from the official
archive. A mirror copy that matches neither is an error, not a reason to fall back to the network.
Downloads go to ``<data.downloads>/<dataset>/`` (see download.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from metalr import io
from metalr.data.download import ChecksumMismatch, DownloadError, RetryPolicy, download, file_digest
from metalr.data.extract import EXTRACTED_MARK, extract
from metalr.data.sources import SOURCES, Archive, Source

log = logging.getLogger(__name__)

SUMS_FILES = (("SHA256SUMS", "sha256"), ("MD5SUMS", "md5"))


@dataclass(frozen=True)
class Fetched:
    path: Path
    origin: str  # "mirror" or "download"
    verified_by: str  # which checksum vouched for it, e.g. "registry md5 ..." or "<mirror>/MD5SUMS"
    sha256: str

    def record(self) -> dict[str, str]:
        return {"file": self.path.name, "origin": self.origin, "verified_by": self.verified_by,
                "sha256": self.sha256}


def mirror_list(data_cfg: Mapping[str, Any]) -> list[Path]:
    mirror = data_cfg.get("mirror") or []
    return [Path(m) for m in ([mirror] if isinstance(mirror, str) else mirror)]


def retry_policy(data_cfg: Mapping[str, Any]) -> RetryPolicy:
    return RetryPolicy(**data_cfg["download"])


def read_sums(path: Path) -> dict[str, str]:
    """``md5sum``/``sha256sum`` output: '<hex>  <name>' (or '<hex> *<name>') per line -> {name: hex}."""
    sums = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip().lstrip("*")] = digest.lower()
    return sums


def _check_mirror_copy(candidate: Path, archive: Archive) -> str:
    """What vouches for a mirror copy; raises ChecksumMismatch when nothing does."""
    if archive.checksum is not None and file_digest(candidate, archive.checksum.algorithm) == archive.checksum.value:
        return f"registry {archive.checksum}"
    for sums_name, algorithm in SUMS_FILES:
        sums_file = candidate.parent / sums_name
        if sums_file.exists() and archive.filename in (sums := read_sums(sums_file)):
            actual = file_digest(candidate, algorithm)
            if actual != sums[archive.filename]:
                raise ChecksumMismatch(
                    f"mirror file {candidate}: {algorithm} is {actual} but {sums_file} lists {sums[archive.filename]}; "
                    "the mirror copy is damaged: replace it, or remove that folder from data.mirror"
                )
            if archive.checksum is not None:
                log.warning("%s differs from the official archive (%s) but is listed in %s: using the mirror's copy",
                            candidate, archive.checksum, sums_file)
            return str(sums_file)
    official = f"the registry's {archive.checksum}" if archive.checksum else "no registry checksum"
    raise ChecksumMismatch(
        f"mirror file {candidate} matches {official} and no SHA256SUMS/MD5SUMS beside it lists it; replace it "
        "with the official archive, add it to the mirror's checksum file, or remove that folder from data.mirror"
    )


def find_in_mirrors(dataset: str, archive: Archive, mirrors: Iterable[Path]) -> Fetched | None:
    for mirror in mirrors:
        if not mirror.is_dir():
            log.info("data.mirror %s does not exist; skipped", mirror)
            continue
        for candidate in (mirror / dataset / archive.filename, mirror / archive.filename):
            if candidate.is_file():
                verified_by = _check_mirror_copy(candidate, archive)
                return Fetched(candidate, "mirror", verified_by, file_digest(candidate, "sha256"))
    return None


def fetch_archive(source: Source, archive: Archive, data_cfg: Mapping[str, Any], progress: bool = True) -> Fetched:
    found = find_in_mirrors(source.dataset, archive, mirror_list(data_cfg))
    if found is not None:
        return found
    if archive.url is None or archive.checksum is None:
        raise DownloadError(
            f"{source.dataset}: {archive.filename} is in no data.mirror folder ({[str(m) for m in mirror_list(data_cfg)]}) "
            f"and cannot be downloaded.\n{source.manual}"
        )
    dest = Path(data_cfg["downloads"]) / source.dataset / archive.filename
    first_time = not dest.exists()
    download(archive.url, dest, archive.checksum, size=archive.size, policy=retry_policy(data_cfg),
             manual=source.manual, progress=progress)
    if first_time and not archive.confirmed:
        log.warning("%s: downloaded and matched the unconfirmed %s; mark it confirmed in metalr/data/sources.py",
                    dest, archive.checksum)
    return Fetched(dest, "download", f"registry {archive.checksum}", file_digest(dest, "sha256"))


def fetch(dataset: str, data_cfg: Mapping[str, Any], progress: bool = True) -> list[Fetched]:
    source = SOURCES[dataset]
    return [fetch_archive(source, archive, data_cfg, progress) for archive in source.archives]


def extracted(fetched: Fetched, data_cfg: Mapping[str, Any], dataset: str) -> Path:
    """The archive unpacked under <data.downloads>/<dataset>/<file>.d/, reused while the archive is unchanged."""
    dest = Path(data_cfg["downloads"]) / dataset / f"{fetched.path.name}.d"
    mark = dest / EXTRACTED_MARK
    if mark.exists() and io.read_json(mark).get("sha256") == fetched.sha256:
        return dest
    return extract(fetched.path, dest, {"archive": str(fetched.path), "sha256": fetched.sha256})

