"""RDM heatmaps in category order."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import scipy.stats

from neuroalign.analysis.plots.figures import save_figure

__all__ = ["plot_rdm"]


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


