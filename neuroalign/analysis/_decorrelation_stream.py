"""Decorrelation metrics of a layer read in feature chunks (see `decorrelation`'s module
docstring, "Streaming"): one n × n Gram matrix and one chunk in memory, whatever D."""

from __future__ import annotations

from neuroalign.analysis._decorrelation_gram import GramSums, abs_correlation_sum, standardized
from neuroalign.analysis.streaming import feature_chunks, feature_slices, is_array

__all__ = ["streamed_decorrelation"]


def _chunk_getter(x, chunk_size: int):
    """(number of chunks, get(k) -> chunk k) for inputs that can be read again, else None."""
    if is_array(x):
        slices = list(feature_slices(tuple(x.shape), chunk_size))
        return len(slices), lambda k: x[slices[k]]
    if isinstance(x, list | tuple):
        return len(x), x.__getitem__
    return None


def _z_chunk(chunk, i: int, n: int | None, units: str):
    """(z-scores, n_constant) of feature chunk i, checked to hold the n stimuli of chunk 0."""
    z, n_constant = standardized(chunk, units, name=f"feature chunk {i}")
    if n is not None and z.shape[0] != n:
        raise ValueError(f"feature chunk {i} has {z.shape[0]} stimuli; chunk 0 had {n}")
    return z, n_constant


def _streamed_mean_abs_r(x, chunk_size: int, n_units: int, units: str) -> float:
    """Mean |C_ij| over i<j from pairs of standardised chunks (chunk i against chunks j >= i)."""
    count, get = _chunk_getter(x, chunk_size)
    total = 0.0
    n: int | None = None
    for i in range(count):
        zi, _ = _z_chunk(get(i), i, n, units)
        n = zi.shape[0]
        total += abs_correlation_sum(zi)
        for j in range(i + 1, count):
            total += abs_correlation_sum(zi, _z_chunk(get(j), j, n, units)[0])
    if n_units < 2:
        return float("nan")
    if n is None:
        raise ValueError("x holds no features (an empty iterable of chunks)")
    return total / (n - 1) / (n_units * (n_units - 1) / 2)


def streamed_decorrelation(x, mean_abs_r: bool, chunk_size: int, units: str) -> dict:
    if mean_abs_r and _chunk_getter(x, chunk_size) is None:
        raise ValueError(
            "mean_abs_r needs to read the chunks more than once; x is a one-shot iterator. "
            "Pass mean_abs_r=False, or an array / a list of chunks."
        )
    sums = GramSums(units)
    for i, chunk in enumerate(feature_chunks(x, chunk_size)):
        z, n_constant = _z_chunk(chunk, i, sums.n or None, units)
        sums.add(z, n_constant)
    metrics = sums.metrics()
    return {
        "L": metrics["L"],
        "mean_abs_r": (
            _streamed_mean_abs_r(x, chunk_size, metrics["n_units"], units)
            if mean_abs_r
            else float("nan")
        ),
        "participation_ratio": metrics["participation_ratio"],
        "n_units": metrics["n_units"],
        "n_constant_units": metrics["n_constant_units"],
    }
