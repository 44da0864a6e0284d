"""Model-vs-model RSA matrices and variance-partitioning bars."""

from __future__ import annotations

import os
import textwrap
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
        da: xr.DataArray (layer_a, layer_b) from `rsa_inference.rsa_matrix`,
            `cka.cka_matrix` or `workflows.model_similarity_from_files` (any 2-D DataArray:
            its coordinates' long_name, else its dims, name the axes).
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
    width = max(30, int(12 * fig.get_figwidth()))  # characters of 7-pt text across the axes
    ax.set_xlabel(textwrap.fill(_axis_name(da, 1), width), fontsize=8)
    ax.set_ylabel(textwrap.fill(_axis_name(da, 0), width), fontsize=8)
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


def _axis_name(da, axis: int) -> str:
    """What the rows (0) or columns (1) are: the coordinate's long_name (as
    ``model_similarity_from_files`` sets it, naming the file and model), else the dim."""
    dim = da.dims[axis]
    coord = da.coords.get(dim)
    return str(coord.attrs.get("long_name", dim)) if coord is not None else str(dim)


def plot_partitioning(ds, out, *, title: str | None = None) -> list[Path]:
    """Variance partitioning: one bar per part (unique and shared) and the stacked total.

    Left: the commonality of every part as a horizontal bar (unique parts in colour, shared
    parts pastel, parts of 3+ models hatched, negative parts left of zero), one part a row so
    that long model names stay readable. Right: one stacked bar splitting the full R² into its
    positive parts, in the same colours. A prefix common to every model name (the file, when
    all layers come from one) is said once in the title instead of on every row.

    Args:
        ds: xr.Dataset from `partitioning.variance_partitioning`.
        out: output file (written as .png and .svg).
        title: figure title (default: the brain data's description or name).

    Returns:
        [png_path, svg_path].
    """
    for var in ("commonality", "total_r2"):
        if var not in ds:
            raise ValueError(
                f"ds has no variable {var!r} (has {list(ds.data_vars)}); pass the result of "
                "variance_partitioning"
            )
    values = ds["commonality"].values
    n_models = ds["n_models"].values
    labels, prefix = _part_labels([str(p) for p in ds["part"].values], n_models)
    pastel = plt.get_cmap("Pastel2")
    shared = [pastel(i) for i in range(pastel.N)]  # its 8 colours, RGBA
    colours = [
        f"C{i}" if k == 1 else shared[(i - int((n_models == 1).sum())) % len(shared)]
        for i, k in enumerate(n_models)
    ]
    hatches = ["" if k < 3 else "//" for k in n_models]
    lines = sum(label.count("\n") + 1 for label in labels)
    longest = max(len(line) for label in labels for line in label.splitlines())
    label_width = 0.06 * longest  # inches of 7-pt text
    fig, (ax, ax_total) = plt.subplots(
        1, 2, figsize=(label_width + 5.0, max(3.0, 0.22 * lines + 1.8)), layout="constrained",
        gridspec_kw={"width_ratios": [label_width + 3.4, 1.2]},
    )
    y = np.arange(len(labels))
    ax.barh(y, values, color=colours, edgecolor="k", lw=0.5, hatch=hatches)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()  # first part on top
    ax.set_xlabel("variance explained (R² part)", fontsize=8)
    ax.set_title("each part", fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    bottom = 0.0
    for value, colour, hatch in zip(values, colours, hatches, strict=True):
        if value > 0:
            ax_total.bar(0, value, bottom=bottom, color=colour, edgecolor="k", lw=0.5, hatch=hatch)
            bottom += value
    total = float(ds["total_r2"])
    ax_total.axhline(total, color="k", ls="--", lw=0.8)
    ax_total.set_xticks([])
    ax_total.set_xlim(-0.8, 0.8)
    ax_total.set_ylim(0, max(bottom, total) * 1.1 if max(bottom, total) > 0 else 1)
    ax_total.tick_params(axis="y", labelsize=7)
    ax_total.set_title(f"positive parts\nR² all = {total:.3f}\n(dashed line)", fontsize=7)
    ax_total.spines[["top", "right"]].set_visible(False)
    brain = ds.attrs.get("brain_description") or ds.attrs.get("brain", "the brain RDM")
    heading = title or f"variance of {brain} explained"
    if prefix and title is None:
        heading += f"\nby layers of {prefix.rstrip(':')}"
    fig.suptitle(heading, fontsize=9)
    return save_figure(fig, out)


def _part_labels(parts: list[str], n_models) -> tuple[list[str], str]:
    """Row labels (a common ``file:`` prefix of the model names cut, one model a line) and
    that prefix ('' if none)."""
    names = [p for p, k in zip(parts, n_models, strict=True) if k == 1]
    prefix = os.path.commonprefix(names) if len(names) > 1 else ""
    prefix = prefix[: prefix.rfind(":") + 1]  # cut whole "file:" prefixes only
    labels = []
    for part, k in zip(parts, n_models, strict=True):
        members = [m for m in names if m in part.split("&")] if k > 1 else [part]
        if len(members) != k:  # a name holding '&': keep the label as it is
            members = [part]
        members = [m[len(prefix):] for m in members]
        labels.append(f"{members[0]} (unique)" if k == 1 else " &\n".join(members))
    return labels, prefix
