"""No data loss (issue 13, items 1, 5 and 6): a stage replaces only what it built, never the working directory
or a folder above it; temporaries of dead writers go, live ones stay; a full disk or a file-size limit and
too little free space are named with the path and the bytes."""
from __future__ import annotations

import dataclasses
import errno
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from metalr import cli, io
from metalr import config as config_mod
from metalr.data import prepare as prepare_mod
from metalr.data.extract import EXTRACTED_MARK, extract
from metalr.data.registry import DATASETS
from tests.unit.synthetic import write_blobs, write_config
from tests.unit.test_datasets import tar_bytes


def build_blobs(out: pathlib.Path, settings) -> dict:
    return io.read_json(write_blobs(out) / "manifest.json")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A project folder as the working directory; building glyphs writes the tiny blobs (fast)."""
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path, pathlib.Path("data"))
    monkeypatch.setitem(DATASETS, "glyphs", dataclasses.replace(DATASETS["glyphs"], build=build_blobs))
    return tmp_path


def data(capsys, *extra: str) -> tuple[int, str]:
    code = cli.main(["data", "--configfile", "tiny.yaml", "--dataset", "glyphs", *extra])
    return code, capsys.readouterr().err


def snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("content", ["notes", "other dataset"])
def test_data_refuses_to_replace_a_folder_it_did_not_build(workdir, capsys, content):
    target = workdir / "mine"
    target.mkdir()
    if content == "notes":
        (target / "thesis.tex").write_text("two years of work")
    else:  # a build of another dataset is not this stage's either
        write_blobs(target)
        manifest = io.read_json(target / "manifest.json")
        io.write_json(target / "manifest.json", {**manifest, "dataset": "omniglot"})
    before = snapshot(target)
    code, err = data(capsys, "--out", "mine")
    assert code == 2
    assert "refusing to replace mine: it exists and is not a build of dataset glyphs" in err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(target) == before


@pytest.mark.parametrize("out", [".", "..", "{cwd}"])
def test_data_refuses_the_working_directory_and_every_folder_above_it(workdir, capsys, out):
    (workdir / "keep.txt").write_text("precious")
    before, around = snapshot(workdir), sorted(workdir.parent.iterdir())
    code, err = data(capsys, "--out", out.format(cwd=workdir))
    assert code == 2
    assert "it is the working directory or a folder above it" in err
    assert snapshot(workdir) == before and sorted(workdir.parent.iterdir()) == around


def test_data_replaces_its_own_earlier_build_and_fills_an_empty_folder(workdir, capsys):
    assert data(capsys)[0] == 0  # into data/glyphs
    (workdir / "data" / "glyphs" / "stale.npy").write_bytes(b"from an older build")
    assert data(capsys)[0] == 0  # its own build: replaced whole
    assert not (workdir / "data" / "glyphs" / "stale.npy").exists()
    (workdir / "empty").mkdir()
    assert data(capsys, "--out", "empty")[0] == 0
    assert (workdir / "empty" / "manifest.json").is_file()


def test_extraction_replaces_only_its_own_extraction(tmp_path):
    archive = tmp_path / "a.tar"
    archive.write_bytes(tar_bytes({"x/readme.txt": b"hello"}, "w"))
    dest = tmp_path / "a.tar.d"
    dest.mkdir()
    (dest / "yours.txt").write_text("not an extraction")
    with pytest.raises(io.UnsafeTarget, match="a.tar.d: it exists and is not an extraction by metalr"):
        extract(archive, dest)
    assert (dest / "yours.txt").read_text() == "not an extraction"
    (dest / "yours.txt").unlink()
    extract(archive, dest)
    extract(archive, dest)  # its own extraction (the mark) is replaced
    assert sorted(p.name for p in dest.iterdir()) == [EXTRACTED_MARK, "x"]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_next_data_run_removes_the_folder_a_killed_build_left_and_keeps_a_live_ones(workdir, capsys):
    killed, live = workdir / "data" / f".glyphs.tmp-{dead_pid()}", workdir / "data" / f".glyphs.tmp-{os.getppid()}"
    for folder in (killed, live):
        folder.mkdir(parents=True)
        (folder / "train_images.npy").write_bytes(b"half")
    assert data(capsys)[0] == 0
    assert not killed.exists() and live.exists()


def test_a_writer_removes_its_targets_temporaries_of_dead_processes_only(tmp_path):
    target = tmp_path / "metrics.json"
    dead, alive = dead_pid(), os.getppid()
    stale = tmp_path / f".metrics.json.{dead}.k1ll3d.tmp"
    writing = tmp_path / f".metrics.json.{alive}.w0rk1n.tmp"
    other = tmp_path / f".metrics.json.sha.{dead}.x.tmp"  # another file's (metrics.json.sha) temporary
    for path in (stale, writing, other):
        path.write_bytes(b"half")
    io.write_json(target, {"a": 1})
    assert not stale.exists() and writing.exists() and other.exists()
    assert io.read_json(target) == {"a": 1}


def test_a_full_disk_is_one_line_with_the_path_the_bytes_needed_and_free(workdir, capsys, monkeypatch):
    real = pathlib.Path.write_bytes

    def full(self, data):
        if self.name.startswith(".train_images.npy"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    code, err = data(capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "cannot write " in err and "train_images.npy: it needs " in err and " bytes are free" in err
    assert "no space left on the device" in err
    assert not (workdir / "data" / "glyphs").exists()
    assert not [p for p in (workdir / "data").iterdir()]  # the half-built folder went with the error


def test_a_file_size_limit_is_named_with_the_bytes(tmp_path):
    """A real EFBIG: a child process with RLIMIT_FSIZE of 1000 bytes writes 5000."""
    script = textwrap.dedent(f"""
        import resource, signal
        from metalr import io
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        try:
            io.write_bytes({str(tmp_path / 'big.bin')!r}, b"x" * 5000)
        except io.DiskFullError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert f"cannot write {tmp_path / 'big.bin'}: it needs 5000 bytes" in out
    assert "the file-size limit (ulimit -f) stops it" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary left


def test_free_space_is_checked_before_a_data_build(workdir, capsys, monkeypatch):
    built = []
    monkeypatch.setitem(DATASETS, "glyphs", dataclasses.replace(
        DATASETS["glyphs"], build=lambda out, settings: built.append(out) or build_blobs(out, settings)))
    monkeypatch.setattr(prepare_mod.shutil, "disk_usage", lambda path: type("U", (), {"free": 10 << 20})())
    code, err = data(capsys)
    assert code == 2 and not built
    needed = DATASETS["glyphs"].array_bytes(config_mod.load([config_mod.DEFAULT_CONFIG, workdir / "tiny.yaml"])["data"])
    assert f"building data/glyphs needs about {needed} bytes" in err and f"{10 << 20} bytes are free" in err
    assert not (workdir / "data").exists()
