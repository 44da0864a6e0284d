"""Encoding scores: per layer the median over neuroids with a bootstrap CI and the ceiling;
per neuroid, the scores of two layers (or models) against each other; a banded model's unique
and shared variance per space."""

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

__all__ = ["median_ci", "plot_banded_encoding", "plot_encoding_pairs", "plot_layerwise_encoding"]


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


def plot_encoding_pairs(
    ds: xr.Dataset,
    layers: tuple[str, str],
    out: str | Path,
    *,
    other: xr.Dataset | None = None,
    labels: tuple[str, str] | None = None,
    title: str = "",
) -> list[Path]:
    """Per-neuroid scores of two layers against each other, one point per neuroid.

    The score is the noise-corrected r (``r_corrected``) when both results have it, else the
    held-out ``r``; the identity line marks equal scores.

    Args:
        ds: a result of :func:`neuroalign.analysis.layerwise_encoding`.
        layers: (x layer, y layer); the y layer is read from ``other`` when given.
        out: where to write ``<out>.png`` and ``<out>.svg``.
        other: a second result (another model) on the same neuroids (matched by
            ``neuroid_id`` when both have it).
        labels: the axis labels (default: the layer names).
    """
    second = ds if other is None else other
    score = "r_corrected" if "r_corrected" in ds and "r_corrected" in second else "r"
    for result, layer in ((ds, layers[0]), (second, layers[1])):
        if layer not in [str(v) for v in result["layer"].values]:
            raise ValueError(
                f"layer {layer!r} is not in the results; they have "
                f"{[str(v) for v in result['layer'].values]}")
    a = ds[score].sel(layer=layers[0])
    b = second[score].sel(layer=layers[1])
    if other is not None and "neuroid_id" in a.coords and "neuroid_id" in b.coords:
        ids_a = [str(v) for v in a["neuroid_id"].values]
        position = {str(v): i for i, v in enumerate(b["neuroid_id"].values)}
        missing = [i for i in ids_a if i not in position]
        if missing:
            raise ValueError(f"{len(missing)} neuroids of the first result are not in the "
                             f"second, e.g. {missing[:3]}")
        b = b.isel(neuroid=[position[i] for i in ids_a])
    elif a.size != b.size:
        raise ValueError(f"the results have {a.size} and {b.size} neuroids")
    x, y = np.asarray(a.values, dtype=float), np.asarray(b.values, dtype=float)
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.scatter(x, y, s=14, color="C0", alpha=0.8, linewidths=0)
    finite = np.concatenate([x, y])
    finite = finite[np.isfinite(finite)]
    lo, hi = min(0.0, float(finite.min())), max(1.0, float(finite.max()))
    pad = 0.03 * (hi - lo)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", color=NOISE_CEILING_COLOR, lw=1)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    what = "noise-corrected r" if score == "r_corrected" else "held-out r"
    xl, yl = labels or layers
    ax.set_xlabel(f"{xl} ({what})")
    ax.set_ylabel(f"{yl} ({what})")
    above = int((y > x).sum())
    ax.set_title(title or f"{x.size} neuroids, {above} above the identity line", fontsize=9)
    return save_figure(fig, out)


def plot_banded_encoding(ds: xr.Dataset, out: str | Path, title: str = "") -> list[Path]:
    """Bars of a banded model (:func:`neuroalign.analysis.banded.banded_encoding`): each space's
    unique held-out R², the shared R² and the joint R², medians over neuroids with 95% CIs;
    noise-corrected (fractions of the NCSNR ceiling) when the result has them. Writes
    ``<out>.png`` and ``<out>.svg``; returns their paths."""
    corrected = "r2_joint_corrected" in ds
    suffix = "_corrected" if corrected else ""
    spaces = [str(v) for v in ds["space"].values]
    labels = [f"unique\n{s}" for s in spaces] + ["shared", "joint"]
    values = [ds[f"r2_unique{suffix}"].sel(space=s).values for s in spaces]
    values += [ds[f"r2_shared{suffix}"].values, ds[f"r2_joint{suffix}"].values]
    med, lo, hi = median_ci(np.stack(values))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(labels) + 1.0), 3.6))
    x = np.arange(len(labels))
    colors = [f"C{i}" for i in range(len(spaces))] + ["0.6", "0.35"]
    ax.bar(x, med, color=colors, width=0.7)
    ax.errorbar(x, med, yerr=[med - lo, hi - med], fmt="none", ecolor="k", capsize=3, lw=1)
    ax.set_xticks(x, labels, fontsize=8)
    ax.axhline(0.0, color="0.7", lw=0.8)
    if corrected:
        ax.axhline(1.0, ls=":", color=NOISE_CEILING_COLOR, lw=0.8)
    ax.set_ylabel("held-out R² / NCSNR ceiling" if corrected else "held-out R²")
    ax.set_title(title or f"banded ridge ({ds.sizes['neuroid']} neuroids, median and 95% CI)",
                 fontsize=9)
    return save_figure(fig, out)
