"""Compile paper/appendix.tex against a folder of generated files into a PDF.

The build runs in a fresh temporary directory (outside the repository): appendix.tex is copied there
and the generated files are copied into ``<build>/generated`` -- the default of the appendix's
``\\providecommand{\\gendir}{generated}`` -- so no path with spaces or TeX-special characters ever
reaches TeX, and no aux file lands in paper/. The folder of appendix.tex is put on TEXINPUTS for
anything else it inputs. The PDF is moved into place atomically; the temporary directory is removed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from metalr.io import atomic_path

REQUIRED = ("latexmk", "pdflatex")
INSTALL_HINT = "apt-get install latexmk texlive-latex-recommended texlive-fonts-recommended"
TIMEOUT_S = 300
SOURCE_DATE_EPOCH = "946684800"  # 2000-01-01: fixed PDF dates (pdfTeX honours SOURCE_DATE_EPOCH)


class LatexNotInstalled(RuntimeError):
    """latexmk or pdflatex is not on PATH."""


class LatexBuildError(RuntimeError):
    """latexmk ran and failed; the message carries the end of the TeX log."""


def _missing() -> list[str]:
    return [cmd for cmd in REQUIRED if shutil.which(cmd) is None]


def latex_available() -> bool:
    return not _missing()


def _require_latex() -> None:
    missing = _missing()
    if missing:
        raise LatexNotInstalled(
            f"cannot compile the appendix: {', '.join(repr(c) for c in missing)} not found on PATH; "
            f"install LaTeX with: {INSTALL_HINT}"
        )


def compile_appendix(appendix_tex: Path, generated_dir: Path, out_pdf: Path) -> Path:
    """Compile ``appendix_tex`` with ``\\gendir`` pointing at a copy of ``generated_dir``; write ``out_pdf``.

    Needs latexmk and pdflatex (raises LatexNotInstalled otherwise) and the files build_report writes
    (build.OUTPUTS) in ``generated_dir``, complete and unchanged (build.IncompleteReport otherwise: a
    report half-replaced by a killed run is never compiled). Raises LatexBuildError with the log tail if
    TeX fails. Returns ``out_pdf``.
    """
    from metalr.report.build import check_report

    appendix_tex = Path(appendix_tex).resolve()
    generated_dir = Path(generated_dir).resolve()
    out_pdf = Path(out_pdf)
    _require_latex()
    if not appendix_tex.is_file():
        raise FileNotFoundError(appendix_tex)
    if not generated_dir.is_dir():
        raise FileNotFoundError(generated_dir)
    check_report(generated_dir)

    with tempfile.TemporaryDirectory(prefix="metalr-latex-") as tmp:
        build = Path(tmp)
        shutil.copy2(appendix_tex, build / "appendix.tex")
        gen = build / "generated"
        gen.mkdir()
        for item in sorted(generated_dir.iterdir()):
            # skip our own output and hidden/in-progress files (e.g. atomic-write temporaries)
            if (item.is_file() and not item.name.startswith(".") and item.resolve() != out_pdf.resolve()
                    and item.suffix in {".tex", ".pdf", ".png", ".csv"}):
                shutil.copy2(item, gen / item.name)
        env = dict(os.environ)
        # "." first: generated/ in the build dir must win over a stale paper/generated/
        env["TEXINPUTS"] = os.pathsep.join([".", str(appendix_tex.parent), env.get("TEXINPUTS", "")])
        env.setdefault("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
        env.setdefault("FORCE_SOURCE_DATE", "1")
        cmd = ["latexmk", "-norc", "-pdf", "-interaction=nonstopmode", "-halt-on-error",
               "-file-line-error", "appendix.tex"]
        try:
            proc = subprocess.run(cmd, cwd=build, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, errors="replace", timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise LatexBuildError(f"latexmk timed out after {TIMEOUT_S} s") from exc
        pdf = build / "appendix.pdf"
        if proc.returncode != 0 or not pdf.is_file():
            log = build / "appendix.log"
            tail = log.read_text(errors="replace")[-4000:] if log.exists() else (proc.stdout + proc.stderr)[-4000:]
            raise LatexBuildError(f"latexmk failed (exit {proc.returncode}) for {appendix_tex}:\n{tail}")
        with atomic_path(out_pdf) as dest:
            shutil.copyfile(pdf, dest)
    return out_pdf
