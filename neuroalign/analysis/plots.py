"""Figures for analysis results: layerwise RSA with noise ceiling, RDM heatmaps, metric bars.

Each function writes `<path>.png` and `<path>.svg` (whatever suffix `path` has), each to a
temporary file renamed when complete, and returns the two paths. Matplotlib's Agg backend is
used, so no display is needed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.stats  # noqa: E402

__all__ = ["plot_layerwise_metric", "plot_layerwise_rsa", "plot_rdm", "save_figure"]

_NC_COLOR = "0.6"


def save_figure(fig, path) -> list[Path]:
    """Writes fig as PNG (150 dpi) and SVG next to `path`, atomically, and closes it.

    Args:
        fig: matplotlib Figure.
        path: target; its suffix is replaced by .png and .svg.

    Returns:
        [png_path, svg_path].
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for fmt in ("png", "svg"):
            target = path.with_suffix(f".{fmt}")
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    fig.savefig(f, format=fmt, dpi=150, bbox_inches="tight")
                os.replace(tmp, target)
            except BaseException:
                os.unlink(tmp)
                raise
            written.append(target)
    finally:
        plt.close(fig)
    return written


def _interval(ax, x, lo, hi, color, label=None) -> None:
    """Vertical intervals [lo, hi] with caps (a bootstrap interval need not contain the mean)."""
    ax.vlines(x, lo, hi, color=color, lw=1.2, label=label, zorder=3)
    ax.scatter(
        np.concatenate([x, x]), np.concatenate([lo, hi]), marker="_", s=40, color=color, zorder=3
    )


def _layer_axis(ax, layers) -> np.ndarray:
    x = np.arange(len(layers))
    ax.set_xticks(x)
    long = len(layers) > 6 or max(len(str(name)) for name in layers) > 8
    ax.set_xticklabels(
        [str(name) for name in layers], rotation=45 if long else 0, ha="right" if long else "center"
    )
    ax.set_xlabel("layer")
    return x


def plot_layerwise_rsa(ds, path, *, show_subjects: bool = True) -> list[Path]:
    """Mean model-brain similarity per layer, with error bars and the noise-ceiling band.

    Error bars are the bootstrap CI (`ci_lo`/`ci_hi`) when present, else the SEM over subjects.

    Args:
        ds: xr.Dataset from `layerwise_rsa` (variables mean, sem, similarity, noise ceiling).
        path: output path (written as .png and .svg).
        show_subjects: also draw each subject's similarity as a small dot.

    Returns:
        [png_path, svg_path].
    """
    for var in ("mean", "sem", "noise_ceiling_lower", "noise_ceiling_upper"):
        if var not in ds:
            raise ValueError(
                f"ds has no variable {var!r} (has {list(ds.data_vars)}); pass the result of layerwise_rsa"
            )
    layers = ds["layer"].values
    mean = ds["mean"].values
    if "ci_lo" in ds and "ci_hi" in ds:
        lo, hi = ds["ci_lo"].values, ds["ci_hi"].values
        err_name = f"{ds.attrs.get('ci', 0.95):.0%} bootstrap CI over stimuli"
    else:
        lo, hi = mean - ds["sem"].values, mean + ds["sem"].values
        err_name = "SEM over subjects"
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(layers) + 2), 3.6))
    x = _layer_axis(ax, layers)
    lower, upper = float(ds["noise_ceiling_lower"]), float(ds["noise_ceiling_upper"])
    if np.isfinite(lower) and np.isfinite(upper):
        ax.axhspan(lower, upper, color=_NC_COLOR, alpha=0.35, lw=0, label="noise ceiling")
    if show_subjects and "similarity" in ds and ds.sizes.get("subject", 0) > 1:
        sim = ds["similarity"].transpose("layer", "subject").values
        jitter = np.linspace(-0.12, 0.12, sim.shape[1])
        ax.scatter(
            (x[:, None] + jitter[None, :]).ravel(),
            sim.ravel(),
            s=6,
            color="0.35",
            alpha=0.6,
            lw=0,
            label="subjects",
            zorder=2,
        )
    ax.plot(x, mean, "o-", color="C0", lw=1.5, zorder=4, label="mean over subjects")
    if np.isfinite(lo).any():
        _interval(ax, x, lo, hi, "C0", label=err_name)
    ax.axhline(0, color="k", lw=0.5)
    method = ds.attrs.get("compare_method", "similarity")
    brain = ds.attrs.get("brain", "brain RDMs")
    ax.set_xlim(-0.5, len(layers) - 0.5)
    ax.set_ylabel(f"{method} similarity\nwith {brain}")
    ax.set_title(f"model RDMs: {ds.attrs.get('rdm_method', '?')} distance", fontsize=10)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.spines[["top", "right"]].set_visible(False)
    return save_figure(fig, path)


def _rank_transform(matrix: np.ndarray) -> np.ndarray:
    """Off-diagonal entries replaced by their rank, scaled to [0, 1]; diagonal 0."""
    n = matrix.shape[0]
    rows, cols = np.triu_indices(n, k=1)
    ranks = scipy.stats.rankdata(matrix[rows, cols])
    ranks = (ranks - 1) / max(ranks.size - 1, 1)
    out = np.zeros_like(matrix, dtype=float)
    out[rows, cols] = ranks
    out[cols, rows] = ranks
    return out


def plot_rdm(
    rdms_or_matrix,
    path,
    order=None,
    labels=None,
    *,
    rank: bool = False,
    title: str | None = None,
    cmap: str = "viridis",
) -> list[Path]:
    """RDM heatmap.

    Args:
        rdms_or_matrix: rsatoolbox RDMs (several RDMs are averaged) or a square array (n, n).
        path: output path (written as .png and .svg).
        order: (n,) pattern indices to show in this order (e.g. category order).
        labels: (n,) tick labels, in the original pattern order (default: the RDMs'
            stimulus_id when n <= 40, else none).
        rank: show dissimilarities as ranks scaled to [0, 1] (percentiles).
        title: figure title (default: the dissimilarity measure).
        cmap: matplotlib colormap name.

    Returns:
        [png_path, svg_path].
    """
    if hasattr(rdms_or_matrix, "get_matrices"):
        matrices = rdms_or_matrix.get_matrices()
        matrix = np.nanmean(matrices, axis=0)
        measure = rdms_or_matrix.dissimilarity_measure or "dissimilarity"
        if title is None:
            title = measure if len(matrices) == 1 else f"mean of {len(matrices)} RDMs ({measure})"
        if labels is None and matrix.shape[0] <= 40:
            labels = rdms_or_matrix.pattern_descriptors.get("stimulus_id")
    else:
        matrix = np.asarray(rdms_or_matrix, dtype=float)
        measure = "dissimilarity"
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(
                f"rdms_or_matrix must be RDMs or a square (n, n) array; got shape {matrix.shape}"
            )
    n = matrix.shape[0]
    order = np.arange(n) if order is None else np.asarray(order)
    if sorted(order.tolist()) != list(range(n)):
        raise ValueError(f"order must be a permutation of 0..{n - 1}; got {len(order)} indices")
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels must hold {n} names (one per pattern); got {len(labels)}")
    matrix = matrix[np.ix_(order, order)]
    if rank:
        matrix = _rank_transform(matrix)
    size = 4.5 if labels is None else min(12.0, 3.0 + 0.18 * n)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    im = ax.imshow(matrix, cmap=cmap, interpolation="nearest")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("rank (0-1)" if rank else measure)
    if labels is not None:
        shown = [str(labels[i]) for i in order]
        ax.set_xticks(np.arange(n), shown, rotation=90, fontsize=6)
        ax.set_yticks(np.arange(n), shown, fontsize=6)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{n} stimuli")
    ax.set_title(title or measure, fontsize=10)
    return save_figure(fig, path)


def plot_layerwise_metric(ds, var: str, path, *, ylabel: str | None = None) -> list[Path]:
    """Bars of one per-layer variable (decorrelation L, participation ratio, probe accuracy).

    Error bars: `<var>_lo` / `<var>_hi` when present; else `<name>_std` for `<name>_mean`;
    if `var` has dims besides `layer` (e.g. seed), bars are its mean over them and error bars
    its std.

    Args:
        ds: xr.Dataset with a `layer` dim (from layerwise_decorrelation / layerwise_probe).
        var: the variable to plot.
        path: output path (written as .png and .svg).
        ylabel: axis label (default: var).

    Returns:
        [png_path, svg_path].
    """
    if var not in ds:
        raise ValueError(f"var must be one of {list(ds.data_vars)}; got {var!r}")
    da = ds[var]
    if "layer" not in da.dims:
        raise ValueError(f"variable {var!r} has dims {da.dims}; it needs a 'layer' dim")
    other = [d for d in da.dims if d != "layer"]
    values = da.mean(other).values if other else da.values
    lo = hi = None
    if f"{var}_lo" in ds and f"{var}_hi" in ds:
        lo, hi = ds[f"{var}_lo"].values, ds[f"{var}_hi"].values
    else:
        err = None
        if var.endswith("_mean") and f"{var[:-5]}_std" in ds:
            err = ds[f"{var[:-5]}_std"].values
        elif other and np.prod([da.sizes[d] for d in other]) > 1:
            err = da.std(other, ddof=1).values
        if err is not None:
            lo, hi = values - err, values + err
    layers = ds["layer"].values
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(layers) + 2), 3.4))
    x = _layer_axis(ax, layers)
    ax.bar(x, values, color="C0", alpha=0.85)
    if lo is not None:
        _interval(ax, x, lo, hi, "k")
    ax.set_ylabel(ylabel or var)
    ax.set_title(str(ds.attrs.get("metric", var)), fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return save_figure(fig, path)
