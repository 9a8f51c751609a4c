"""Safe, all-or-nothing extraction of tar and zip archives.

Every member is checked before anything is written: absolute paths, ``..`` components, links that
point outside the destination, and device files are refused with an error naming the member. The
archive is unpacked into a temporary folder beside the destination, which is renamed into place only
when every member is out, so the destination either does not exist or is complete.
"""
from __future__ import annotations

import gzip
import os
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

# Python 3.12's tarfile on every 3.11: extraction filters (``filter="data"``) came in 3.11.4, and
# Debian 12's own Python is 3.11.2.
from backports import tarfile

from metalr import io

EXTRACTED_MARK = ".extracted-from.json"  # written into every extraction: what it came from, and that it is ours


class UnsafeArchive(ValueError):
    """An archive member would land outside the destination, or is a device/special file."""


class CorruptArchive(ValueError):
    """An archive cannot be read to its end (truncated or damaged)."""


def _check_name(archive: Path, name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (path.parts and ":" in path.parts[0]):
        raise UnsafeArchive(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    if ".." in path.parts:
        raise UnsafeArchive(f"{archive}: member {name!r} climbs out of the destination with '..'; refusing to extract")


def _check_link(archive: Path, member: tarfile.TarInfo) -> None:
    # A symlink's target is relative to the link's folder; a hard link's is relative to the archive root.
    base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
    target = PurePosixPath(member.linkname)
    depth = 0
    for part in (base / target).parts if not target.is_absolute() else ("/",):
        if part == "/":
            depth = -1
            break
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            break
    if depth < 0:
        raise UnsafeArchive(
            f"{archive}: link {member.name!r} -> {member.linkname!r} points outside the destination; refusing to extract"
        )


def check_tar_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    for member in members:
        _check_name(archive, member.name)
        if member.issym() or member.islnk():
            _check_link(archive, member)
        elif not (member.isfile() or member.isdir()):
            raise UnsafeArchive(f"{archive}: member {member.name!r} is a device or special file; refusing to extract")


def _extract_tar(archive: Path, into: Path) -> None:
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()  # reads the whole index: a truncated archive fails here
            check_tar_members(archive, members)
            tar.extractall(into, members=members, filter="data")
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise CorruptArchive(f"{archive} is truncated or damaged ({exc}); delete it and download it again") from exc


def _extract_zip(archive: Path, into: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                _check_name(archive, info.filename)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UnsafeArchive(f"{archive}: member {info.filename!r} is a symlink; refusing to extract")
            bad = zf.testzip()
            if bad is not None:
                raise CorruptArchive(f"{archive}: member {bad!r} fails its CRC; delete the archive and download it again")
            zf.extractall(into, members=infos)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise CorruptArchive(f"{archive} is truncated or damaged ({exc}); delete it and download it again") from exc


def extract(archive: str | os.PathLike, dest: str | os.PathLike, record: Mapping[str, Any] | None = None) -> Path:
    """Unpack ``archive`` (tar, tar.gz, tgz or zip) into the folder ``dest``, all or nothing.

    ``dest/EXTRACTED_MARK`` records ``record`` (default: the archive's path); an existing ``dest`` is
    replaced only when it holds that mark (an earlier extraction) or is empty, else io.UnsafeTarget.
    """
    archive, dest = Path(archive), Path(dest)
    with io.atomic_dir(dest, lambda folder: (folder / EXTRACTED_MARK).is_file(),
                       f"an extraction by metalr (holding {EXTRACTED_MARK})") as tmp:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, tmp)
        else:
            _extract_tar(archive, tmp)
        io.write_json(tmp / EXTRACTED_MARK, dict(record or {"archive": str(archive)}))
    return dest
