"""PNG plots: training curves from ``metrics.jsonl``, and the confusion matrix of an evaluation.

matplotlib is imported only when a plot is drawn, and only its object-oriented API is used
(``Figure`` rendered by the Agg canvas): no pyplot, so no global backend is switched and no window
opens. Every file is written atomically (a temporary file beside it, then a rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def _figure(width: float = 7.0, height: float = 4.5):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plots need matplotlib: pip install matplotlib") from None
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    from ..io.files import atomic_write

    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    return Path(path)


# ------------------------------------------------------------------------------- training curves
def read_metrics(metrics_jsonl: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``, one per epoch (the last one wins), sorted by epoch.

    Blank and unparsable lines (e.g. a line being written) are skipped; a record without ``epoch``
    gets its line's position.
    """
    by_epoch: dict[float, dict[str, Any]] = {}
    with open(metrics_jsonl, encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                epoch = record.get("epoch")
                by_epoch[epoch if isinstance(epoch, (int, float)) else number] = record
    return [{**by_epoch[e], "epoch": e} for e in sorted(by_epoch)]


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of ``key``, leaving out records where it is missing, None or not a number."""
    points = [
        (r["epoch"], r[key])
        for r in records
        if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool) and np.isfinite(r[key])
    ]
    return [p[0] for p in points], [p[1] for p in points]


def _line_plot(records, series: list[tuple[str, str]], ylabel: str, title: str, path: Path) -> Path | None:
    """Plot each (key, legend label) present in ``records`` against the epoch; None if none is present."""
    present = [(label, *_series(records, key)) for key, label in series]
    present = [(label, xs, ys) for label, xs, ys in present if xs]
    if not present:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for label, xs, ys in present:
        ax.plot(xs, ys, label=label, marker="o" if len(xs) <= 30 else None, markersize=3)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(present) > 1:
        ax.legend()
    return _save(fig, path)


def plot_training_curves(metrics_jsonl: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Draw ``loss.png``, ``accuracy.png`` and ``lr.png`` in ``out_dir`` from a trainer's ``metrics.jsonl``.

    Records hold ``epoch``, ``train_loss``, ``lr``, ``val_loss``, ``val_top1``, ``val_top5`` and
    optionally ``ema_val_top1``/``ema_val_top5`` (segmentation: ``val_miou``, ``val_pixel_accuracy``,
    ``ema_val_miou``); missing keys and None values are left out, and a
    plot with no values at all is not written. Returns the paths written.
    """
    records = read_metrics(metrics_jsonl)
    out = Path(out_dir)
    plots = [
        ([("train_loss", "train"), ("val_loss", "validation")], "cross-entropy loss", "Loss", "loss.png"),
        (
            [
                ("val_top1", "top-1"),
                ("val_top5", "top-5"),
                ("ema_val_top1", "EMA top-1"),
                ("ema_val_top5", "EMA top-5"),
                ("val_miou", "mIoU"),  # segmentation
                ("val_pixel_accuracy", "pixel accuracy"),
                ("ema_val_miou", "EMA mIoU"),
            ],
            "validation accuracy (%)",
            "Validation accuracy",
            "accuracy.png",
        ),
        ([("lr", "learning rate")], "learning rate", "Learning rate", "lr.png"),
    ]
    written = [_line_plot(records, series, ylabel, title, out / name) for series, ylabel, title, name in plots]
    return [path for path in written if path is not None]


# ------------------------------------------------------------------------------- confusion matrix
def plot_confusion_matrix(
    confusion: np.ndarray,
    class_names: list[str],
    path: str | os.PathLike,
    max_named: int = 30,
    row_totals: np.ndarray | None = None,
) -> Path:
    """Draw the confusion matrix (rows: true class, normalized to fractions; columns: predicted).

    ``row_totals`` are the images per true class (default: the row sums; larger when some predictions
    fall outside the matrix).
    Class names label the axes for at most ``max_named`` classes; up to 15 classes, cells also show counts.
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    n = len(class_names)
    rows = confusion.sum(axis=1, keepdims=True) if row_totals is None else np.asarray(row_totals).reshape(-1, 1)
    fraction = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    side = min(max(6.0, 0.3 * n + 2), 20.0)
    fig = _figure(side + 1.5, side)
    ax = fig.add_subplot()
    image = ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix ({int(rows.sum())} images, {n} classes)")
    if n <= max_named:
        ax.set_xticks(range(n), labels=class_names, rotation=90 if n > 8 else 45, ha="right" if n <= 8 else "center")
        ax.set_yticks(range(n), labels=class_names)
    if n <= 15:
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    ax.text(
                        j,
                        i,
                        str(confusion[i, j]),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if fraction[i, j] > 0.5 else "black",
                    )
    return _save(fig, path)
