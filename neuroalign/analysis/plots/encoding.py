"""Encoding scores per layer: the median over neuroids with a bootstrap CI, and the ceiling."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from neuroalign.analysis.plots.figures import (
    NOISE_CEILING_COLOR,
    draw_interval,
    layer_axis,
    save_figure,
)

__all__ = ["median_ci", "plot_layerwise_encoding"]


def median_ci(scores: np.ndarray, n_boot: int = 1000, ci: float = 0.95, seed: int = 0):
    """(median, lo, hi) over the last axis; the interval from resampling neuroids."""
    rng = np.random.default_rng(seed)
    n = scores.shape[-1]
    boot = np.median(scores[..., rng.integers(0, n, (n_boot, n))], axis=-1)
    tail = (1 - ci) / 2 * 100
    return (np.median(scores, axis=-1), np.percentile(boot, tail, axis=-1),
            np.percentile(boot, 100 - tail, axis=-1))


def plot_layerwise_encoding(ds: xr.Dataset, out: str | Path, title: str = "") -> list[Path]:
    """Median held-out r per layer with a 95% CI over neuroids.

    With ceilings (``r_corrected`` in ``ds``): the noise-corrected median (its ceiling is 1)
    and the raw median beside the median ceiling of raw r, ``sqrt(split_half_reliability)``.
    Writes ``<out>.png`` and ``<out>.svg``; returns their paths.
    """
    layers = [str(v) for v in ds["layer"].values]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(layers) + 2), 3.6))
    x = layer_axis(ax, layers)
    med, lo, hi = median_ci(ds["r"].values)
    ax.plot(x, med, "o-", color="0.45", label="r (median over neuroids)")
    draw_interval(ax, x, lo, hi, "0.45")
    if "r_corrected" in ds:
        med_c, lo_c, hi_c = median_ci(ds["r_corrected"].values)
        ax.plot(x, med_c, "o-", color="C0", label="noise-corrected r")
        draw_interval(ax, x, lo_c, hi_c, "C0")
        ceiling = float(np.median(np.sqrt(ds["split_half_reliability"].values)))
        ax.axhline(ceiling, ls="--", color=NOISE_CEILING_COLOR,
                   label=f"ceiling of r (median {ceiling:.2f})")
        ax.axhline(1.0, ls=":", color=NOISE_CEILING_COLOR, lw=0.8)
    ax.axhline(0.0, color="0.7", lw=0.8)
    ax.set_ylabel("held-out r")
    ax.set_title(title or f"encoding ({ds.sizes['neuroid']} neuroids, {ds.attrs.get('folds')}-fold)")
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(fig, out)
