"""Downloads against a loopback server with injected faults, and safe extraction of hostile archives."""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from metalr.data import download as dl
from metalr.data.extract import CorruptArchive, UnsafeArchive, extract

from .loopback import LoopbackServer, Served

FAST = dl.RetryPolicy(attempts=4, initial_delay_s=0.001, max_delay_s=0.01, timeout_s=5)
PAYLOAD = os.urandom(300_000)
MD5 = dl.Checksum("md5", hashlib.md5(PAYLOAD).hexdigest())
SHA256 = dl.Checksum("sha256", hashlib.sha256(PAYLOAD).hexdigest())


@pytest.fixture
def served():
    state = Served(files={"/a.bin": PAYLOAD})
    with LoopbackServer(state) as server:
        yield state, server


def leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


@pytest.mark.parametrize("checksum", [MD5, SHA256], ids=["md5", "sha256"])
def test_plain_download_is_verified_and_in_place(served, tmp_path, checksum):
    _, server = served
    dest = dl.download(server.url("/a.bin"), tmp_path / "a.bin", checksum, size=len(PAYLOAD), policy=FAST,
                       progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(tmp_path, "a.bin") == []


def test_dropped_connection_resumes_with_a_range_request(served, tmp_path):
    state, server = served
    state.faults["/a.bin"] = ["drop", "drop"]
    dest = dl.download(server.url("/a.bin"), tmp_path / "a.bin", SHA256, policy=FAST, progress=False)
    assert dest.read_bytes() == PAYLOAD
    ranges = [r for _, r in state.requests]
    assert ranges[0] is None and ranges[1] == f"bytes={len(PAYLOAD) // 2}-"
    assert ranges[2] is not None and int(ranges[2].split("=")[1][:-1]) > len(PAYLOAD) // 2
    assert leftovers(tmp_path, "a.bin") == []


def test_server_ignoring_range_restarts_the_file(served, tmp_path):
    state, server = served
    state.ignore_range = True
    state.faults["/a.bin"] = ["drop"]
    dest = dl.download(server.url("/a.bin"), tmp_path / "a.bin", SHA256, policy=FAST, progress=False)
    assert dest.read_bytes() == PAYLOAD  # appended to the half file, it would be 1.5x long
    assert state.requests[1][1] is not None


def test_a_part_file_from_an_earlier_run_is_resumed(served, tmp_path):
    state, server = served
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:1000])
    dl.download(server.url("/a.bin"), tmp_path / "a.bin", SHA256, policy=FAST, progress=False)
    assert state.requests == [("/a.bin", "bytes=1000-")]
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_503_then_success_is_retried(served, tmp_path):
    state, server = served
    state.faults["/a.bin"] = ["503", "503"]
    dl.download(server.url("/a.bin"), tmp_path / "a.bin", SHA256, policy=FAST, progress=False)
    assert len(state.requests) == 3
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_persistent_503_gives_up_after_the_configured_attempts_and_keeps_nothing_in_place(served, tmp_path):
    state, server = served
    state.faults["/a.bin"] = ["503"] * 10
    with pytest.raises(dl.DownloadError, match="gave up after 4 attempts"):
        dl.download(server.url("/a.bin"), tmp_path / "a.bin", SHA256, policy=FAST, progress=False)
    assert len(state.requests) == 4
    assert not (tmp_path / "a.bin").exists()


def test_403_is_not_retried_and_gives_the_manual_instructions(served, tmp_path):
    state, server = served
    state.faults["/a.bin"] = ["403"]
    with pytest.raises(dl.DownloadRefused, match="HTTP 403") as err:
        dl.download(server.url("/a.bin"), tmp_path / "a.bin", SHA256, policy=FAST, progress=False,
                    manual="Download a.bin by hand into data/raw/x/")
    assert "Download a.bin by hand into data/raw/x/" in str(err.value)
    assert len(state.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_checksum_mismatch_moves_the_file_aside_and_names_it(served, tmp_path):
    state, server = served
    state.files["/a.bin"] = PAYLOAD[:-1] + b"X"
    with pytest.raises(dl.ChecksumMismatch) as err:
        dl.download(server.url("/a.bin"), tmp_path / "a.bin", SHA256, policy=FAST, progress=False)
    aside = [p for p in tmp_path.iterdir()]
    assert len(aside) == 1 and aside[0].name.startswith("a.bin.corrupt-")
    assert str(aside[0]) in str(err.value)
    assert not (tmp_path / "a.bin").exists()


def test_truncated_file_served_as_complete_fails_its_checksum(served, tmp_path):
    state, server = served
    state.files["/a.bin"] = PAYLOAD[: len(PAYLOAD) // 3]
    with pytest.raises(dl.ChecksumMismatch):
        dl.download(server.url("/a.bin"), tmp_path / "a.bin", MD5, policy=FAST, progress=False)
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "a.bin.part").exists()


def test_an_existing_destination_is_verified_not_trusted(served, tmp_path):
    state, server = served
    (tmp_path / "a.bin").write_bytes(b"stale")
    with pytest.raises(dl.ChecksumMismatch, match="corrupt-"):
        dl.download(server.url("/a.bin"), tmp_path / "a.bin", SHA256, policy=FAST, progress=False)
    assert state.requests == []
    # The next run downloads it afresh.
    dl.download(server.url("/a.bin"), tmp_path / "a.bin", SHA256, policy=FAST, progress=False)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_too_little_free_space_stops_before_downloading(served, tmp_path):
    state, server = served
    with pytest.raises(dl.InsufficientSpace, match="GiB free"):
        dl.download(server.url("/a.bin"), tmp_path / "a.bin", SHA256, size=1 << 60, policy=FAST, progress=False)
    assert state.requests == []


def test_backoff_doubles_up_to_the_cap():
    policy = dl.RetryPolicy(initial_delay_s=1, max_delay_s=5)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]


# ---- extraction ----------------------------------------------------------------------------------

def make_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_tar_extracts_completely_into_place(tmp_path):
    archive = make_tar(tmp_path / "ok.tgz", [("top/a.txt", b"a"), ("top/sub/b.txt", b"b"), link("top/l", "a.txt")])
    out = extract(archive, tmp_path / "out")
    assert (out / "top" / "sub" / "b.txt").read_bytes() == b"b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.tgz", "out"]


@pytest.mark.parametrize("member,reason", [
    (("../evil.txt", b"x"), "'..'"),
    (("top/../../evil.txt", b"x"), "'..'"),
    (("/etc/evil.txt", b"x"), "absolute"),
    (link("top/l", "../../outside"), "outside"),
    (link("top/l", "/etc/passwd"), "outside"),
    (link("top/h", "../outside", tarfile.LNKTYPE), "outside"),
])
def test_hostile_tar_members_are_refused_and_nothing_is_written(tmp_path, member, reason):
    archive = make_tar(tmp_path / "bad.tgz", [("top/a.txt", b"a"), member])
    with pytest.raises(UnsafeArchive, match=reason):
        extract(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tgz"]


def test_zip_traversal_is_refused(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", "a")
        zf.writestr("../evil.txt", "x")
    with pytest.raises(UnsafeArchive, match="'..'"):
        extract(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip"]


@pytest.mark.parametrize("suffix,mode", [("tgz", "w:gz"), ("tar", "w")])
def test_truncated_tar_is_reported_and_nothing_is_written(tmp_path, suffix, mode):
    archive = make_tar(tmp_path / f"t.{suffix}", [(f"top/{i}.bin", os.urandom(20_000)) for i in range(5)], mode)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(CorruptArchive, match="truncated or damaged"):
        extract(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"t.{suffix}"]


def test_truncated_zip_is_reported(tmp_path):
    archive = tmp_path / "t.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(5):
            zf.writestr(f"top/{i}.bin", os.urandom(20_000))
    archive.write_bytes(archive.read_bytes()[:50_000])
    with pytest.raises(CorruptArchive):
        extract(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.zip"]
