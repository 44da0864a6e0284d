"""Figures for analysis results: layerwise RSA with noise ceiling, RDM heatmaps, metric bars.

Each function writes `<out>.png` and `<out>.svg` (whatever suffix `out` has), each to a
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

__all__ = [
    "plot_layerwise_metric",
    "plot_layerwise_rsa",
    "plot_partitioning",
    "plot_rdm",
    "plot_rsa_matrix",
    "save_figure",
]

_NC_COLOR = "0.6"


def save_figure(fig, out) -> list[Path]:
    """Writes fig as PNG (150 dpi) and SVG next to `out`, atomically, and closes it.

    Args:
        fig: matplotlib Figure.
        out: target; its suffix is replaced by .png and .svg.

    Returns:
        [png_path, svg_path].
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for fmt in ("png", "svg"):
            target = out.with_suffix(f".{fmt}")
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


def plot_layerwise_rsa(ds, out, *, show_subjects: bool = True) -> list[Path]:
    """Mean model-brain similarity per layer, with error bars and the noise-ceiling band.

    Error bars are the bootstrap CI (`ci_lo`/`ci_hi`) when present, else the SEM over subjects.

    Args:
        ds: xr.Dataset from `layerwise_rsa` (variables mean, sem, similarity, noise ceiling).
        out: output file (written as .png and .svg).
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
    return save_figure(fig, out)


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
    out,
    order=None,
    labels=None,
    *,
    rank: bool = False,
    title: str | None = None,
    cmap: str = "viridis",
    categories=None,
    category_order=None,
) -> list[Path]:
    """RDM heatmap, optionally grouped by category.

    For the 92 images: ``categories=stimulus_set.coords["category"]`` and
    ``category_order=[c for c, _ in stimulus_sets.CATEGORIES_92]``.

    Args:
        rdms_or_matrix: rsatoolbox RDMs (several RDMs are averaged) or a square array (n, n).
        out: output file (written as .png and .svg).
        order: (n,) pattern indices to show in this order (default: category order when
            `categories` is given, else the patterns' order).
        labels: (n,) tick labels, in the original pattern order (default: the RDMs'
            stimulus_id when n <= 40 and no categories, else none).
        categories: (n,) category of each pattern (names or integers such as
            `category_index`), in the original pattern order: patterns are sorted by category
            (stably), groups are separated by lines and named on the axes.
        category_order: the categories in display order (default: sorted if numbers, else
            in order of first appearance).
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
        if labels is None and categories is None and matrix.shape[0] <= 40:
            labels = rdms_or_matrix.pattern_descriptors.get("stimulus_id")
    else:
        matrix = np.asarray(rdms_or_matrix, dtype=float)
        measure = "dissimilarity"
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(
                f"rdms_or_matrix must be RDMs or a square (n, n) array; got shape {matrix.shape}"
            )
    n = matrix.shape[0]
    groups = None
    if categories is not None:
        groups, category_order_idx = _category_groups(categories, category_order, n)
        if order is None:
            order = np.argsort(category_order_idx, kind="stable")
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
    elif groups is not None:
        group_of = np.array([str(categories[i]) for i in order])
        starts = [0] + [i for i in range(1, n) if group_of[i] != group_of[i - 1]]
        ends = starts[1:] + [n]
        centres = [(a + b - 1) / 2 for a, b in zip(starts, ends, strict=True)]
        for edge in starts[1:]:
            ax.axhline(edge - 0.5, color="w", lw=0.8)
            ax.axvline(edge - 0.5, color="w", lw=0.8)
        names = [group_of[a] for a in starts]
        ax.set_xticks(centres, names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(centres, names, fontsize=7)
        ax.tick_params(length=0)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{n} stimuli")
    ax.set_title(title or measure, fontsize=10)
    return save_figure(fig, out)


def _category_groups(categories, category_order, n: int) -> tuple[list, np.ndarray]:
    """(categories in display order, (n,) position of each pattern's category in that order)."""
    categories = np.asarray(categories)
    if categories.shape != (n,):
        raise ValueError(
            f"categories must hold one category per pattern ({n}); got shape {categories.shape}"
        )
    if category_order is None:
        if categories.dtype.kind in "iuf":
            category_order = sorted(set(categories.tolist()))
        else:
            category_order = list(dict.fromkeys(categories.tolist()))
    category_order = list(category_order)
    missing = sorted(set(map(str, categories.tolist())) - set(map(str, category_order)))
    if missing:
        raise ValueError(
            f"category_order must list every category; missing {missing} (got {category_order})"
        )
    position = {str(c): i for i, c in enumerate(category_order)}
    return category_order, np.array([position[str(c)] for c in categories.tolist()])


def plot_layerwise_metric(ds, var: str, out, *, ylabel: str | None = None) -> list[Path]:
    """Bars of one per-layer variable (decorrelation L, participation ratio, probe accuracy).

    Error bars: `<var>_lo` / `<var>_hi` when present; else `<name>_std` for `<name>_mean`;
    if `var` has dims besides `layer` (e.g. seed), bars are its mean over them and error bars
    its std.

    Args:
        ds: xr.Dataset with a `layer` dim (from layerwise_decorrelation / layerwise_probe).
        var: the variable to plot.
        out: output file (written as .png and .svg).
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
    bars = ""
    if f"{var}_lo" in ds and f"{var}_hi" in ds:
        lo, hi = ds[f"{var}_lo"].values, ds[f"{var}_hi"].values
        if ds.attrs.get("n_boot"):
            bars = f"; bars: {ds.attrs.get('ci', 0.95):.0%} bootstrap CI over stimuli"
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
    ax.set_title(f"{ds.attrs.get('metric', var)}{bars}", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return save_figure(fig, out)


def plot_rsa_matrix(
    da,
    out,
    *,
    title: str | None = None,
    annotate: bool | None = None,
    cmap: str = "magma",
    vmin: float | None = None,
    vmax: float | None = None,
) -> list[Path]:
    """Heatmap of a layer × layer similarity matrix (model-vs-model RSA or CKA).

    Args:
        da: xr.DataArray (layer_a, layer_b) from `rsa_inference.rsa_matrix` or
            `cka.cka_matrix` (any 2-D DataArray: its dims name the axes).
        out: output file (written as .png and .svg).
        title: figure title (default: the comparison method or metric).
        annotate: write the values in the cells (default: when both sides have <= 12 layers).
        cmap: matplotlib colormap name.
        vmin, vmax: colour limits (default: the data's range).

    Returns:
        [png_path, svg_path].
    """
    if getattr(da, "ndim", None) != 2 or not hasattr(da, "dims"):
        raise ValueError(
            f"da must be a 2-D xr.DataArray (layer_a, layer_b); got {type(da).__name__} with "
            f"shape {getattr(da, 'shape', None)}"
        )
    values = np.asarray(da.values, dtype=float)
    rows = [str(v) for v in da[da.dims[0]].values]
    cols = [str(v) for v in da[da.dims[1]].values]
    if annotate is None:
        annotate = max(len(rows), len(cols)) <= 12
    fig, ax = plt.subplots(
        figsize=(min(12.0, 2.5 + 0.45 * len(cols)), min(11.0, 2.0 + 0.4 * len(rows)))
    )
    im = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    label = da.attrs.get("compare_method") or da.attrs.get("metric") or (da.name or "similarity")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).set_label(str(label))
    ax.set_xticks(np.arange(len(cols)), cols, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(np.arange(len(rows)), rows, fontsize=7)
    ax.set_xlabel(str(da.dims[1]))
    ax.set_ylabel(str(da.dims[0]))
    if annotate:
        lo, hi = np.nanmin(values), np.nanmax(values)
        for (i, j), v in np.ndenumerate(values):
            bright = (v - lo) / (hi - lo) > 0.6 if hi > lo else False
            ax.text(
                j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="k" if bright else "w"
            )
    if title is None:
        method = da.attrs.get("compare_method")
        title = f"model-vs-model RSA ({method})" if method else str(label)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, out)


def plot_partitioning(ds, out, *, title: str | None = None) -> list[Path]:
    """Variance partitioning: one bar per part (unique and shared) and the stacked total.

    Left: the commonality of every part (unique parts in colour, shared parts grey, negative
    parts below zero). Right: one stacked bar splitting the full R² into its positive parts.

    Args:
        ds: xr.Dataset from `partitioning.variance_partitioning`.
        out: output file (written as .png and .svg).
        title: figure title (default: the brain RDMs' name).

    Returns:
        [png_path, svg_path].
    """
    for var in ("commonality", "total_r2"):
        if var not in ds:
            raise ValueError(
                f"ds has no variable {var!r} (has {list(ds.data_vars)}); pass the result of "
                "variance_partitioning"
            )
    parts = [str(p) for p in ds["part"].values]
    values = ds["commonality"].values
    n_models = ds["n_models"].values
    pastel = plt.get_cmap("Pastel2")
    shared = [pastel(i) for i in range(pastel.N)]  # its 8 colours, RGBA
    colours = [
        f"C{i}" if k == 1 else shared[(i - int((n_models == 1).sum())) % len(shared)]
        for i, k in enumerate(n_models)
    ]
    hatches = ["" if k < 3 else "//" for k in n_models]
    fig, (ax, ax_total) = plt.subplots(
        1,
        2,
        figsize=(max(5.0, 0.55 * len(parts) + 3.5), 3.6),
        gridspec_kw={"width_ratios": [max(len(parts), 2), 1.3]},
    )
    x = np.arange(len(parts))
    ax.bar(x, values, color=colours, edgecolor="k", lw=0.5, hatch=hatches)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(
        x,
        [p if k > 1 else f"{p}\n(unique)" for p, k in zip(parts, n_models, strict=True)],
        rotation=45 if len(parts) > 3 else 0,
        ha="right" if len(parts) > 3 else "center",
        fontsize=7,
    )
    ax.set_ylabel("variance explained (R² part)")
    ax.spines[["top", "right"]].set_visible(False)
    bottom = 0.0
    for value, colour, hatch, part in zip(values, colours, hatches, parts, strict=True):
        if value > 0:
            ax_total.bar(
                0,
                value,
                bottom=bottom,
                color=colour,
                edgecolor="k",
                lw=0.5,
                hatch=hatch,
                label=part,
            )
            bottom += value
    total = float(ds["total_r2"])
    ax_total.axhline(total, color="k", ls="--", lw=0.8)
    ax_total.set_xticks([0], [f"R² all\n= {total:.3f}"], fontsize=7)
    ax_total.set_xlim(-0.8, 0.8)
    ax_total.set_ylim(0, max(bottom, total) * 1.1 if max(bottom, total) > 0 else 1)
    ax_total.legend(fontsize=6, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax_total.spines[["top", "right"]].set_visible(False)
    fig.suptitle(
        title or f"variance of {ds.attrs.get('brain', 'the brain RDM')} explained", fontsize=10
    )
    fig.tight_layout()
    return save_figure(fig, out)
