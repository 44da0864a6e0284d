"""Linear centered kernel alignment (CKA) between two representations of the same stimuli.

Kornblith et al. (2019), "Similarity of neural network representations revisited", ICML.
With X (n, D1) and Y (n, D2) centred per feature, linear CKA is

    CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)                 (feature space, D × D matrices)
        = ⟨K, L⟩_F / (‖K‖_F ‖L‖_F),  K = XXᵀ, L = YYᵀ   (stimulus space, n × n Gram matrices)

(‖YᵀX‖²_F = tr(XᵀYYᵀX) = tr(XXᵀYYᵀ)). We use the Gram form: for n stimuli ≪ D features it
needs n × n memory, and the Gram matrices are accumulated over feature chunks, so a layer
never has to be in memory. CKA is invariant to orthogonal transforms and isotropic scaling of
either representation (not to arbitrary invertible linear maps), and is 1 for identical ones.

Debiased CKA replaces each ⟨K, L⟩ by the unbiased HSIC estimator of Song et al. (2012, JMLR
13:1393), on Gram matrices with zeroed diagonal (K̃, L̃):

    HSIC_u = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n-1)(n-2)) - 2/(n-2)·1ᵀK̃L̃1] / (n(n-3)),

so that for independent representations its expectation is 0 (biased CKA of unrelated
representations with D ≫ n is far above 0). Needs n ≥ 4. It can be slightly negative.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import xarray as xr

from neuroalign.analysis._arrays import as_matrix, check_finite
from neuroalign.analysis.dask_gram import as_dask, centred_gram
from neuroalign.analysis.streaming import feature_chunks

__all__ = ["cka_from_grams", "cka_matrix", "gram", "linear_cka"]


def gram(x, chunk_size: int = 4096) -> np.ndarray:
    """The n × n Gram matrix of feature-centred activations, X_c X_cᵀ, in float64.

    Args:
        x: activations (n, ...) — numpy, torch, xarray/dask, netCDF4 variable — or an
            iterable of (n, chunk) arrays (streamed).
        chunk_size: features read at a time from an array.

    Returns:
        np.ndarray (n, n).
    """
    if as_dask(x) is not None:  # a dask graph of row-block tiles, on the active scheduler
        tiled = centred_gram(as_dask(x), chunk_size)
        bad = np.flatnonzero(~np.isfinite(np.diag(tiled)))
        if len(bad):
            raise ValueError(f"x has NaN or infinite values in stimuli {bad[:5].tolist()}")
        return tiled
    out = None
    for i, chunk in enumerate(feature_chunks(x, chunk_size)):
        c = as_matrix(chunk, name=f"feature chunk {i}")
        check_finite(c, name=f"feature chunk {i}")
        if out is None:
            out = np.zeros((c.shape[0], c.shape[0]))
        elif c.shape[0] != out.shape[0]:
            raise ValueError(
                f"feature chunk {i} has {c.shape[0]} stimuli; chunk 0 had {out.shape[0]}"
            )
        c = c - c.mean(axis=0)
        out += c @ c.T
    if out is None:
        raise ValueError("x holds no features (an empty iterable of chunks)")
    return out


def _unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    n = k.shape[0]
    k = k.copy()
    l = l.copy()  # noqa: E741
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    k_rows, l_rows = k.sum(axis=1), l.sum(axis=1)
    value = (
        np.einsum("ij,ij->", k, l)
        + k_rows.sum() * l_rows.sum() / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * float(k_rows @ l_rows)
    )
    return float(value / (n * (n - 3)))


def cka_from_grams(k: np.ndarray, l: np.ndarray, debiased: bool = False) -> float:  # noqa: E741
    """Linear CKA from two (n, n) Gram matrices of centred activations (see `gram`)."""
    k, l = np.asarray(k, dtype=np.float64), np.asarray(l, dtype=np.float64)  # noqa: E741
    if k.shape != l.shape or k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(
            f"Gram matrices must be square and of the same shape; got {k.shape} and {l.shape}"
        )
    if debiased:
        n = k.shape[0]
        if n < 4:
            raise ValueError(f"debiased CKA needs at least 4 stimuli; got {n}")
        xy, xx, yy = _unbiased_hsic(k, l), _unbiased_hsic(k, k), _unbiased_hsic(l, l)
    else:
        xy, xx, yy = (float(np.einsum("ij,ij->", a, b)) for a, b in ((k, l), (k, k), (l, l)))
    if xx <= 0 or yy <= 0:
        which = "x" if xx <= 0 else "y"
        raise ValueError(
            f"CKA is undefined: {which} has no variance over the stimuli (all features constant)"
        )
    return xy / np.sqrt(xx * yy)


def linear_cka(x, y, *, debiased: bool = False, chunk_size: int = 4096) -> float:
    """Linear CKA of two representations of the same n stimuli (rows in the same order).

    Args:
        x: activations (n, ...) — any input of `gram` (arrays, lazy arrays, chunk iterables).
        y: activations (n, ...), the same stimuli in the same row order.
        debiased: use the unbiased HSIC estimator (see the module docstring).
        chunk_size: features read at a time from an array.

    Returns:
        float; 1 for representations equal up to rotation and scale, near 0 for unrelated
        ones when debiased.
    """
    k, l = gram(x, chunk_size), gram(y, chunk_size)  # noqa: E741
    if k.shape != l.shape:
        raise ValueError(f"x and y must hold the same stimuli; got {k.shape[0]} and {l.shape[0]}")
    return cka_from_grams(k, l, debiased)


def cka_matrix(
    activations_a: Mapping[str, object] | Iterable[tuple[str, object]],
    activations_b: Mapping[str, object] | Iterable[tuple[str, object]] | None = None,
    *,
    debiased: bool = False,
    chunk_size: int = 4096,
) -> xr.DataArray:
    """Linear CKA of every layer of one model with every layer of another (or itself).

    Each layer is read once (its n × n Gram matrix is kept), so the cost is one pass over
    each layer plus n² per pair.

    Args:
        activations_a: {layer_name: x (n, ...)} or (layer_name, x) pairs.
        activations_b: the same for the second model, same stimuli in the same row order;
            None: activations_a against itself.
        debiased: see `linear_cka`.
        chunk_size: features read at a time.

    Returns:
        xr.DataArray (layer_a, layer_b) named 'cka'.
    """

    def grams(activations):
        items = activations.items() if isinstance(activations, Mapping) else activations
        out = {}
        for name, x in items:
            try:
                out[str(name)] = gram(x, chunk_size)
            except ValueError as err:
                raise ValueError(f"layer {name!r}: {err}") from err
        if not out:
            raise ValueError("activations is empty: give at least one (layer_name, x)")
        return out

    grams_a = grams(activations_a)
    grams_b = grams_a if activations_b is None else grams(activations_b)
    n_a = {g.shape[0] for g in grams_a.values()}
    n_b = {g.shape[0] for g in grams_b.values()}
    if len(n_a | n_b) != 1:
        raise ValueError(f"all layers must hold the same stimuli; got numbers {sorted(n_a | n_b)}")
    values = np.array(
        [[cka_from_grams(ka, kb, debiased) for kb in grams_b.values()] for ka in grams_a.values()]
    )
    return xr.DataArray(
        values,
        dims=("layer_a", "layer_b"),
        coords={
            "layer_a": np.array(list(grams_a), dtype=str),
            "layer_b": np.array(list(grams_b), dtype=str),
        },
        name="cka",
        attrs={"metric": "linear CKA", "debiased": int(debiased)},
    )
