"""Figures: accuracy vs number of ways (ways.pdf), cross-domain accuracy (cross_domain.pdf), the
distribution of the step sizes λ (lambda.pdf/.png) and training curves (training.pdf).

Matplotlib is used through ``Figure`` objects with the Agg canvas (no pyplot, no global backend),
under a fixed rcParams set, and saved without a creation date: same inputs -> same bytes.
"""
from __future__ import annotations

import io as _io
import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from metalr.io import read_json, write_bytes

from . import aggregate as agg

RC = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 6.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "lines.linewidth": 1.2,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "pdf.compression": 6,
    "svg.hashsalt": "metalr-report",
    "path.simplify": True,
    "text.usetex": False,
}
PDF_METADATA = {"CreationDate": None, "ModDate": None, "Creator": "metalr.report", "Producer": "matplotlib"}
PNG_METADATA = {"Software": "metalr.report"}
THIRDS = ("early", "middle", "late")  # λ distributions per third of training
BOX_WHISKERS = (5, 95)  # percentiles; λ outside them is not drawn (thousands of points per box)
MAX_CURVE_POINTS = 2000  # the moving-average curves are subsampled to at most this many points


@dataclass
class TrainLog:
    run: dict
    iterations: list[int]
    query_accuracy: list[float]
    query_loss: list[float]
    inner_steps: int
    task_batch: int
    lambdas: np.ndarray | None = field(default=None, repr=False)  # [iterations, task_batch, inner_steps]
    path: str = ""
    validation: dict | None = None  # {"iterations", "accuracy"}: scores on the validation tasks (train.validate_every)
    selected_iteration: int | None = None  # the iterate kept (train.select): the last, or the best on validation

    @property
    def label(self) -> str:
        r = self.run
        return f"{r['dataset']} {r['ways']}w{r['shots']}s {agg.method_label(r['algorithm'], r['rule'])}"

    @property
    def setting(self) -> tuple[str, int, int]:
        return (str(self.run["dataset"]), int(self.run["ways"]), int(self.run["shots"]))

    @property
    def sort_key(self) -> tuple:
        r = self.run
        return (r.get("experiment", ""), *self.setting, agg.algorithm_rank(r["algorithm"]),
                agg.rule_rank(r["rule"]), int(r["seed"]), r["run_id"])


def load_train_log(run_dir: Path) -> TrainLog:
    run_dir = Path(run_dir)
    data = read_json(run_dir / "train_log.json")
    lam_path = run_dir / "lambdas.npy"
    lambdas = None
    if lam_path.exists():
        lambdas = np.load(lam_path, mmap_mode="r", allow_pickle=False)
        if lambdas.ndim != 3:
            raise ValueError(f"{lam_path}: expected [iterations, task_batch, inner_steps], got shape {lambdas.shape}")
    try:
        return TrainLog(
            run=dict(data["run"]),
            iterations=[int(i) for i in data["iterations"]],
            query_accuracy=[float(a) for a in data["query_accuracy"]],
            query_loss=[float(v) for v in data.get("query_loss", [])],
            inner_steps=int(data["inner_steps"]),
            task_batch=int(data["task_batch"]),
            lambdas=lambdas,
            path=run_dir.as_posix(),
            validation=data.get("validation"),
            selected_iteration=data.get("selection", {}).get("iteration"),
        )
    except KeyError as exc:
        raise ValueError(f"{run_dir / 'train_log.json'}: missing {exc}") from exc


def load_train_logs(run_dirs: list[Path]) -> list[TrainLog]:
    logs = sorted((load_train_log(d) for d in run_dirs), key=lambda t: t.sort_key)
    ids = [t.run["run_id"] for t in logs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"training log given more than once: {sorted({i for i in ids if ids.count(i) > 1})}")
    return logs


def mpl_text(text: str) -> str:
    """Literal text for matplotlib (no mathtext from stray '$')."""
    return str(text).replace("$", r"\$")


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path, fmt: str) -> Path:
    buf = _io.BytesIO()
    metadata = PDF_METADATA if fmt == "pdf" else PNG_METADATA
    fig.savefig(buf, format=fmt, metadata=metadata)
    write_bytes(path, buf.getvalue())
    return Path(path)


def _step_colours(n: int) -> list:
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(0.9 * i / max(n - 1, 1)) for i in range(n)]


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average along axis 0 ('valid' part: len(values) - window + 1 rows)."""
    values = np.asarray(values, dtype=np.float64)
    window = max(1, min(int(window), len(values)))
    csum = np.cumsum(np.concatenate([np.zeros((1,) + values.shape[1:]), values]), axis=0)
    return (csum[window:] - csum[:-window]) / window


def lambda_summary(lambdas: np.ndarray) -> dict:
    """λ per third of training (early, middle, late) and per inner step, over all tasks of those
    iterations (``thirds[i][k]``: a 1-d array), and the per-iteration mean over tasks (smoothed)."""
    lam = np.asarray(lambdas, dtype=np.float64)
    total = lam.shape[0]
    bounds = np.linspace(0, total, len(THIRDS) + 1).round().astype(int)
    thirds = [[lam[a:b, :, k].ravel() for k in range(lam.shape[2])] for a, b in zip(bounds[:-1], bounds[1:])]
    per_iter = np.nanmean(lam, axis=1)  # [iterations, steps]
    window = max(1, total // 50)
    smooth = moving_average(per_iter, window)
    x = np.arange(window, total + 1)
    stride = max(1, int(math.ceil(len(x) / MAX_CURVE_POINTS)))
    return {"thirds": thirds, "bounds": bounds, "x": x[::stride], "smooth": smooth[::stride],
            "window": window, "total": total}


def _fixed_reference(logs: list[TrainLog], run: dict) -> float | None:
    """λ of the fixed-rule run matching `run` (same setting, algorithm and seed), if it was logged."""
    for t in logs:
        r = t.run
        if (r["rule"] == "fixed" and t.lambdas is not None and t.lambdas.size
                and all(r[k] == run[k] for k in ("dataset", "ways", "shots", "algorithm", "seed"))):
            return float(np.nanmean(np.asarray(t.lambdas, dtype=np.float64)))
    return None


def lambda_figure(logs: list[TrainLog], pdf_path: Path, png_path: Path | None = None) -> list[Path]:
    """(a) distribution of λ over tasks per inner step, for the early, middle and late third of training
    (boxes: quartiles and median, whiskers: BOX_WHISKERS percentiles); (b) mean λ over tasks vs iteration
    (moving average), one colour per step; one row per adaptive-rule (non-fixed) run."""
    adaptive = [t for t in logs if t.run["rule"] != "fixed" and t.lambdas is not None and t.lambdas.size]
    with matplotlib.rc_context(RC):
        if not adaptive:
            fig = _new_figure(6.0, 1.8)
            ax = fig.add_subplot()
            ax.axis("off")
            fixed = sorted({round(float(np.nanmean(np.asarray(t.lambdas))), 6)
                            for t in logs if t.lambdas is not None and t.lambdas.size})
            msg = "No MLPLR (adaptive step-size) training run with a λ log in this report."
            if fixed:
                msg += "\nFixed-rule step size(s): " + ", ".join(f"λ = {v:g}" for v in fixed)
            ax.text(0.5, 0.5, msg, ha="center", va="center", transform=ax.transAxes)
        else:
            fig = _new_figure(7.0, 0.4 + 2.0 * len(adaptive))
            axes = fig.subplots(len(adaptive), 2, squeeze=False)
            for row, t in enumerate(adaptive):
                s = lambda_summary(t.lambdas)
                steps = len(s["thirds"][0])
                colours = _step_colours(steps)
                ax_a, ax_b = axes[row]
                third_colours = [matplotlib.colormaps["Greys"](0.35 + 0.25 * i) for i in range(len(THIRDS))]
                width = 0.8 / len(THIRDS)
                for i, (name, per_step) in enumerate(zip(THIRDS, s["thirds"])):
                    pos = np.arange(1, steps + 1) + (i - (len(THIRDS) - 1) / 2) * width
                    data = [v[np.isfinite(v)] for v in per_step]
                    if not all(len(d) for d in data):  # a third without iterations (very short runs)
                        continue
                    box = ax_a.boxplot(data, positions=pos, widths=0.9 * width, whis=BOX_WHISKERS, showfliers=False,
                                       patch_artist=True, medianprops={"color": "black", "linewidth": 0.8})
                    for patch in box["boxes"]:
                        patch.set_facecolor(third_colours[i])
                        patch.set_linewidth(0.5)
                    box["boxes"][0].set_label(f"{name} third")
                ref = _fixed_reference(logs, t.run)
                if ref is not None:
                    ax_a.axhline(ref, color="0.3", linestyle="--", linewidth=1, label=f"fixed λ = {ref:g}")
                ax_a.legend(loc="best", frameon=False)
                ax_a.set_xticks(np.arange(1, steps + 1), [str(k) for k in range(1, steps + 1)])
                ax_a.set_xlabel("inner step")
                ax_a.set_ylabel("λ over tasks")
                ax_a.set_title(mpl_text(f"(a) {t.label}, seed {t.run['seed']}"), loc="left")
                for k in range(steps):
                    ax_b.plot(s["x"], s["smooth"][:, k], color=colours[k], label=f"step {k + 1}")
                ax_b.set_xlabel("training iteration")
                ax_b.set_ylabel("mean λ over tasks")
                ax_b.set_title(f"(b) moving average over {s['window']} it.", loc="left")
                ax_b.legend(loc="best", frameon=False, ncol=2 if steps > 5 else 1)
        written = [_save(fig, pdf_path, "pdf")]
        if png_path is not None:
            written.append(_save(fig, png_path, "png"))
    return written


def training_figure(logs: list[TrainLog], pdf_path: Path) -> list[Path]:
    """Query accuracy vs training iteration, one panel per setting, one line per method (and seed); where
    training validated (train.validate_every), the validation accuracy as dots joined by a thin line, and
    the iterate kept (train.select) ringed."""
    with matplotlib.rc_context(RC):
        if not logs:
            return _placeholder("No training logs in this report.", pdf_path)
        settings = sorted({t.setting for t in logs})
        methods = sorted({(t.run["algorithm"], t.run["rule"]) for t in logs},
                         key=lambda m: (agg.algorithm_rank(m[0]), agg.rule_rank(m[1])))
        algs = sorted({m[0] for m in methods}, key=agg.algorithm_rank)
        palette = matplotlib.colormaps["tab10"]
        colour = {a: palette(i % 10) for i, a in enumerate(algs)}
        ncols = min(3, len(settings))
        nrows = int(math.ceil(len(settings) / ncols))
        fig = _new_figure(2.6 * ncols + 0.6, 2.3 * nrows + 0.3)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, setting in zip(axes, settings):
            labelled = set()
            for t in logs:
                if t.setting != setting or not t.iterations:
                    continue
                m = (t.run["algorithm"], t.run["rule"])
                ax.plot(t.iterations, 100.0 * np.asarray(t.query_accuracy, dtype=np.float64),
                        color=colour[m[0]], linestyle="--" if m[1] == "fixed" else "-",
                        label=None if m in labelled else mpl_text(agg.method_label(*m)))
                labelled.add(m)
                if t.validation and t.validation.get("iterations"):
                    val_it, val_acc = t.validation["iterations"], 100.0 * np.asarray(t.validation["accuracy"])
                    ax.plot(val_it, val_acc, color=colour[m[0]], linestyle=":", linewidth=0.8, marker=".",
                            markersize=3, label=None if "validation" in labelled else "validation (dotted)")
                    labelled.add("validation")
                    if t.selected_iteration in val_it:
                        ax.plot([t.selected_iteration], [val_acc[val_it.index(t.selected_iteration)]], marker="o",
                                markersize=6, markerfacecolor="none", color=colour[m[0]], linestyle="none",
                                label=None if "kept" in labelled else "iterate kept (ringed)")
                        labelled.add("kept")
            d, w, s = setting
            ax.set_title(mpl_text(f"{d}, {w}-way {s}-shot"), loc="left")
            ax.set_xlabel("training iteration")
            ax.set_ylabel("query accuracy (%)")
            ax.legend(loc="lower right", frameon=False)
        for ax in axes[len(settings):]:
            ax.axis("off")
        return [_save(fig, pdf_path, "pdf")]


def _placeholder(message: str, path: Path) -> list[Path]:
    fig = _new_figure(6.0, 1.5)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    return [_save(fig, path, "pdf")]


def _method_styles(cells) -> dict[tuple[str, str], dict]:
    """One colour per method (paper order), dashed for the fixed rule."""
    methods = sorted({(c.algorithm, c.rule) for c in cells.itertuples()},
                     key=lambda m: (agg.algorithm_rank(m[0]), agg.rule_rank(m[1])))
    palette = matplotlib.colormaps["tab10"]
    return {m: {"color": palette(i % 10), "linestyle": "--" if m[1] == "fixed" else "-",
                "label": mpl_text(agg.method_label(*m))} for i, m in enumerate(methods)}


def _grid(n: int, width: float = 2.8, height: float = 2.3) -> tuple[Figure, list]:
    ncols = min(3, n)
    nrows = int(math.ceil(n / ncols))
    fig = _new_figure(width * ncols + 0.6, height * nrows + 0.4)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.axis("off")
    return fig, axes[:n]


def ways_figure(cells, pdf_path: Path) -> list[Path]:
    """Accuracy (± 95% CI) vs number of ways, one panel per in-domain (dataset, shots) run at more than
    one ways value, one line per method; a figure saying so when there is none."""
    own = cells[cells["dataset"] == cells["test_dataset"]]
    panels = [key for key, g in own.groupby(["dataset", "shots"], sort=True) if g["ways"].nunique() > 1]
    with matplotlib.rc_context(RC):
        if not panels:
            return _placeholder("Every dataset of this experiment was run at one number of ways:\n"
                                "no accuracy-vs-ways curve to draw.", pdf_path)
        styles = _method_styles(own)
        fig, axes = _grid(len(panels))
        for ax, (dataset, shots) in zip(axes, panels):
            sub = own[(own["dataset"] == dataset) & (own["shots"] == shots)]
            for method, style in styles.items():
                line = sub[(sub["algorithm"] == method[0]) & (sub["rule"] == method[1])].sort_values("ways")
                if line.empty:
                    continue
                ax.errorbar(line["ways"], 100.0 * line["mean"], yerr=100.0 * line["ci95"], marker="o", markersize=3,
                            capsize=2, **style)
            ax.set_xticks(sorted(sub["ways"].unique()))
            ax.set_title(mpl_text(f"{dataset}, {shots}-shot"), loc="left")
            ax.set_xlabel("ways (classes per task)")
            ax.set_ylabel("test accuracy (%)")
            ax.legend(loc="best", frameon=False)
        return [_save(fig, pdf_path, "pdf")]


def cross_domain_figure(cells, pdf_path: Path) -> list[Path]:
    """Cross-domain accuracy (± 95% CI): one panel per (train dataset, ways, shots), one group of bars per
    target dataset, one bar per method; a figure saying so when there is no cross-domain evaluation."""
    cross = cells[cells["dataset"] != cells["test_dataset"]]
    with matplotlib.rc_context(RC):
        if cross.empty:
            return _placeholder("No cross-domain evaluation in this experiment\n"
                                "(every model was tested on its training dataset).", pdf_path)
        styles = _method_styles(cross)
        panels = sorted({(c.dataset, int(c.ways), int(c.shots)) for c in cross.itertuples()})
        fig, axes = _grid(len(panels), width=3.4)
        width = 0.8 / len(styles)
        for ax, (dataset, ways, shots) in zip(axes, panels):
            sub = cross[(cross["dataset"] == dataset) & (cross["ways"] == ways) & (cross["shots"] == shots)]
            targets = sorted(set(sub["test_dataset"]))
            for i, (method, style) in enumerate(styles.items()):
                bars = sub[(sub["algorithm"] == method[0]) & (sub["rule"] == method[1])]
                pos = [targets.index(t) + (i - (len(styles) - 1) / 2) * width for t in bars["test_dataset"]]
                ax.bar(pos, 100.0 * bars["mean"], width=0.9 * width, yerr=100.0 * bars["ci95"], capsize=1.5,
                       color=style["color"], hatch="//" if method[1] == "fixed" else None, edgecolor="white",
                       linewidth=0, label=style["label"])
            ax.set_xticks(range(len(targets)), [mpl_text(t) for t in targets])
            ax.set_title(mpl_text(f"trained on {dataset}, {ways}-way {shots}-shot"), loc="left")
            ax.set_ylabel("test accuracy (%)")
            ax.legend(loc="best", frameon=False)
        return [_save(fig, pdf_path, "pdf")]
