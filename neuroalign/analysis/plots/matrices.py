"""Model-vs-model RSA matrices and variance-partitioning bars."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from neuroalign.analysis.plots.figures import save_figure

__all__ = ["plot_partitioning", "plot_rsa_matrix"]


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
