"""Mirrors before the network: official checksum, the mirror's own checksum files, and refusals."""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest

from metalr.data import fetch as fetch_mod
from metalr.data.download import Checksum, ChecksumMismatch, DownloadError
from metalr.data.sources import Archive, Source

from .loopback import LoopbackServer, Served

OFFICIAL = os.urandom(5000)
REPACKED = os.urandom(5000)  # same content, other bytes: like the Omniglot mirror's re-zipped archives


def source(url: str | None = None) -> Source:
    checksum = Checksum("md5", hashlib.md5(OFFICIAL).hexdigest())
    return Source("toy", "https://example.invalid", (Archive("toy.zip", url, checksum, len(OFFICIAL), True),),
                  manual="Put toy.zip in data/raw/toy/ by hand.", citation="")


def data_cfg(tmp_path: Path, mirrors: list[Path]) -> dict:
    return {"downloads": str(tmp_path / "raw"), "mirror": [str(m) for m in mirrors],
            "download": {"attempts": 2, "initial_delay_s": 0.001, "max_delay_s": 0.001, "timeout_s": 5}}


def fetch_toy(tmp_path, mirrors, url=None):
    src = source(url)
    return fetch_mod.fetch_archive(src, src.archives[0], data_cfg(tmp_path, mirrors), progress=False)


@pytest.mark.parametrize("subfolder", ["toy", ""], ids=["mirror/dataset/file", "mirror/file"])
def test_mirror_copy_with_the_official_checksum_is_used_in_place(tmp_path, subfolder):
    folder = tmp_path / "mirror" / subfolder
    folder.mkdir(parents=True)
    (folder / "toy.zip").write_bytes(OFFICIAL)
    got = fetch_toy(tmp_path, [tmp_path / "absent", tmp_path / "mirror"])
    assert got.path == folder / "toy.zip" and got.origin == "mirror" and got.verified_by.startswith("registry md5")
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("sums,algorithm", [("MD5SUMS", "md5"), ("SHA256SUMS", "sha256")])
def test_repacked_copy_is_accepted_only_through_the_mirrors_checksum_file(tmp_path, caplog, sums, algorithm):
    folder = tmp_path / "mirror" / "toy"
    folder.mkdir(parents=True)
    (folder / "toy.zip").write_bytes(REPACKED)
    (folder / sums).write_text(f"{hashlib.new(algorithm, REPACKED).hexdigest()}  toy.zip\n")
    with caplog.at_level(logging.WARNING):
        got = fetch_toy(tmp_path, [tmp_path / "mirror"])
    assert got.verified_by == str(folder / sums)
    assert "differs from the official archive" in caplog.text


def test_repacked_copy_without_a_checksum_file_is_an_error_not_a_fallback(tmp_path):
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "toy.zip").write_bytes(REPACKED)
    with pytest.raises(ChecksumMismatch, match="no SHA256SUMS/MD5SUMS beside it lists it"):
        fetch_toy(tmp_path, [folder], url="http://127.0.0.1:9/never-asked")
    assert (folder / "toy.zip").read_bytes() == REPACKED  # a mirror is never moved or changed


def test_copy_that_differs_from_its_checksum_file_is_damaged(tmp_path):
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "toy.zip").write_bytes(REPACKED)
    (folder / "MD5SUMS").write_text(f"{hashlib.md5(b'other').hexdigest()} *toy.zip\n")
    with pytest.raises(ChecksumMismatch, match="damaged"):
        fetch_toy(tmp_path, [folder])


def test_no_mirror_copy_downloads_from_the_network(tmp_path):
    with LoopbackServer(Served(files={"/toy.zip": OFFICIAL})) as server:
        got = fetch_toy(tmp_path, [tmp_path / "absent"], url=server.url("/toy.zip"))
    assert got.origin == "download" and got.path == tmp_path / "raw" / "toy" / "toy.zip"
    assert got.path.read_bytes() == OFFICIAL


def test_no_mirror_and_no_url_says_what_to_do(tmp_path):
    with pytest.raises(DownloadError, match="Put toy.zip in data/raw/toy/ by hand"):
        fetch_toy(tmp_path, [])


def test_read_sums_accepts_md5sum_text_and_binary_markers(tmp_path):
    path = tmp_path / "MD5SUMS"
    path.write_text("ABC  a.zip\ndef *b c.zip\n\n")
    assert fetch_mod.read_sums(path) == {"a.zip": "abc", "b c.zip": "def"}


def test_extracted_folder_is_reused_while_the_archive_is_unchanged(tmp_path):
    import zipfile

    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/x.txt", "1")
    cfg = data_cfg(tmp_path, [])
    fetched = fetch_mod.Fetched(archive, "mirror", "test", "sha-1")
    out = fetch_mod.extracted(fetched, cfg, "toy")
    (out / "top" / "x.txt").write_text("edited")
    assert (fetch_mod.extracted(fetched, cfg, "toy") / "top" / "x.txt").read_text() == "edited"
    changed = fetch_mod.Fetched(archive, "mirror", "test", "sha-2")
    assert (fetch_mod.extracted(changed, cfg, "toy") / "top" / "x.txt").read_text() == "1"
