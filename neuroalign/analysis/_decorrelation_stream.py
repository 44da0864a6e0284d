"""Decorrelation metrics of a layer read in feature chunks (see `decorrelation`'s module
docstring, "Streaming"): two n × n Gram matrices and one chunk in memory, whatever D."""

from __future__ import annotations

import numpy as np

from neuroalign.analysis._arrays import as_matrix, check_finite
from neuroalign.analysis.decorrelation import EPS, _diagonal_sq, _zscore
from neuroalign.analysis.streaming import feature_chunks, feature_slices, is_array

__all__ = ["streamed_decorrelation"]


def _chunk_matrix(chunk, i: int, n: int | None) -> np.ndarray:
    c = as_matrix(chunk, name=f"feature chunk {i}")
    if n is not None and c.shape[0] != n:
        raise ValueError(f"feature chunk {i} has {c.shape[0]} stimuli; chunk 0 had {n}")
    check_finite(c, name=f"feature chunk {i}")
    return c


def _chunk_getter(x, chunk_size: int):
    """(number of chunks, get(k) -> chunk k) for inputs that can be read again, else None."""
    if is_array(x):
        slices = list(feature_slices(tuple(x.shape), chunk_size))
        return len(slices), lambda k: x[slices[k]]
    if isinstance(x, list | tuple):
        return len(x), x.__getitem__
    return None


def _streamed_mean_abs_r(x, chunk_size: int, n_units: int, units: str) -> float:
    """Mean |C_ij| over i<j from pairs of standardised chunks (chunk i against chunks j >= i)."""
    count, get = _chunk_getter(x, chunk_size)
    total = 0.0
    n: int | None = None
    for i in range(count):
        zi, _, _ = _zscore(_chunk_matrix(get(i), i, n), units)
        n = zi.shape[0]
        total += np.abs(np.triu(zi.T @ zi, k=1)).sum()
        for j in range(i + 1, count):
            zj, _, _ = _zscore(_chunk_matrix(get(j), j, n), units)
            total += np.abs(zi.T @ zj).sum()
    if n_units < 2:
        return float("nan")
    if n is None:
        raise ValueError("x holds no features (an empty iterable of chunks)")
    return float(total / (n - 1) / (n_units * (n_units - 1) / 2))


def streamed_decorrelation(x, mean_abs_r: bool, chunk_size: int, units: str) -> dict:
    if mean_abs_r and _chunk_getter(x, chunk_size) is None:
        raise ValueError(
            "mean_abs_r needs to read the chunks more than once; x is a one-shot iterator. "
            "Pass mean_abs_r=False, or an array / a list of chunks."
        )
    n = gram_z = gram_c = None
    d = d_total = n_constant = 0
    trace = diagonal_sq = 0.0
    for i, chunk in enumerate(feature_chunks(x, chunk_size)):
        c = _chunk_matrix(chunk, i, n)
        if n is None:
            n = c.shape[0]
            gram_z, gram_c = np.zeros((n, n)), np.zeros((n, n))
        if not c.flags.owndata:
            c = c.copy()  # a view of the caller's data: it is modified in place below
        varying = c.max(axis=0) != c.min(axis=0)
        n_constant += int((~varying).sum())
        d_total += c.shape[1]
        if units == "varying" and not varying.all():
            c = c[:, varying]
        c -= c.mean(axis=0)  # in place: one float64 copy of the chunk at a time
        ss = np.einsum("ij,ij->j", c, c)
        gram_c += c @ c.T
        trace += float(ss.sum())
        if units == "varying":
            c /= np.sqrt(ss / (n - 1))  # now z-scores
        else:
            c /= np.sqrt(ss / (n - 1)) + EPS
        gram_z += c @ c.T
        diagonal_sq += _diagonal_sq(c, units)
        d += c.shape[1]
    if n is None or gram_z is None or gram_c is None:  # all three are set by the first chunk
        raise ValueError("x holds no features (an empty iterable of chunks)")
    if n_constant == d_total:
        raise ValueError(
            f"all {n_constant} units are constant over the stimuli; decorrelation is undefined"
        )
    sq_norm = float(np.einsum("ij,ij->", gram_z, gram_z))
    if units == "varying":
        diagonal_sq = float(d)  # the same float as in memory, not a sum of per-chunk d's
    return {
        "L": (sq_norm / (n - 1) ** 2 - diagonal_sq) / d,
        "mean_abs_r": (
            _streamed_mean_abs_r(x, chunk_size, d, units) if mean_abs_r else float("nan")
        ),
        "participation_ratio": trace**2 / float(np.einsum("ij,ij->", gram_c, gram_c)),
        "n_units": d,
        "n_constant_units": n_constant,
    }
