"""The training log: ``log.csv`` in the run folder, one row per logged step, and its figure.

A row is written every ``log_every`` steps, on every step L is computed, at the last step,
and at an interruption.
Columns: ``step`` (optimiser steps done), ``loss`` (mean training loss since the previous row),
``lr`` (learning rate of the last step), ``decorrelation`` (FocusMIM's L of the latent of the
step's (global) batch, on the rows of every ``decorrelation_every``-th step and empty on the
others, through the n×n Gram matrix: ``neuroalign.analysis.decorrelation_torch`` with
``units="varying"``, i.e. units constant over the batch left out; NaN, with one warning a run
saying why, when it cannot be computed), ``images_per_s`` and ``elapsed_s``. Any spreadsheet, pandas
(``pd.read_csv``) or :func:`read_log` opens it.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

__all__ = ["LOG_FIELDS", "format_row", "plot_log", "read_log", "start_log"]

LOG_FIELDS = ("step", "loss", "lr", "decorrelation", "images_per_s", "elapsed_s")


def start_log(path: str | Path, keep_until: int = 0) -> Path:
    """(Re)write ``path`` with the header and the rows of steps ≤ ``keep_until`` already in it.

    A resumed run calls this with its starting step, so rows it will log again are dropped and
    every step appears once.
    """
    path = Path(path)
    rows = []
    if path.exists() and keep_until > 0:
        with path.open(newline="") as f:
            rows = [r for r in csv.reader(f)][1:]
        rows = [r for r in rows if r and int(r[0]) <= keep_until]
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(LOG_FIELDS)
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def format_row(step: int, loss: float, lr: float, decorrelation: float | None,
               images_per_s: float, elapsed_s: float) -> list[str]:
    """One row of the log; ``decorrelation`` None (not computed at this step): an empty cell."""
    return [str(step), f"{loss:.6g}", f"{lr:.6g}",
            "" if decorrelation is None else f"{decorrelation:.6g}", f"{images_per_s:.1f}",
            f"{elapsed_s:.1f}"]


def read_log(path: str | Path):
    """``log.csv`` as an ``xarray.Dataset`` along ``step`` (one variable per column; an empty
    cell, e.g. ``decorrelation`` on a step where it was not computed, is NaN)."""
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Training log {path} does not exist.")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = set(LOG_FIELDS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} is not a neuroalign training log; columns {sorted(missing)} are missing.")
        rows = list(reader)
    columns = {k: np.array([float(r[k] or "nan") for r in rows]) for k in LOG_FIELDS}
    step = columns.pop("step").astype(np.int64)
    return xr.Dataset({k: ("step", v) for k, v in columns.items()}, coords={"step": step},
                      attrs={"source": str(path)})


def plot_log(log_csv: str | Path, png: str | Path | None = None):
    """Loss, latent decorrelation L and learning rate over training steps, in one figure.

    Args:
        log_csv: a run's ``log.csv``.
        png: where to save the figure (any format matplotlib knows by the suffix), or None.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    log = read_log(log_csv)
    fig, axes = plt.subplots(3, 1, figsize=(6, 6.5), sharex=True)
    series = (("loss", "training loss"), ("decorrelation", "decorrelation L"), ("lr", "learning rate"))
    for ax, (name, label) in zip(axes, series, strict=True):
        values = log[name].values
        ok = np.isfinite(values)
        ax.plot(log["step"].values[ok], values[ok], marker="." if ok.sum() < 30 else None)
        ax.set_ylabel(label)
        if name == "loss" and ok.any() and (values[ok] > 0).all():
            ax.set_yscale("log")
    axes[-1].set_xlabel("step")
    fig.suptitle(Path(log_csv).parent.name or str(log_csv))
    fig.tight_layout()
    if png is not None:
        fig.savefig(png, dpi=120)
    return fig
