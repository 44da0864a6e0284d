"""The one Gram matrix behind decorrelation L, mean |r| and the participation ratio (the
formulas are in `decorrelation`'s module docstring).

Everything here is float64: the z-scores and their products. L = ‖ZZᵀ‖²/((n-1)²D) - 1
subtracts two nearly equal numbers when the units are nearly decorrelated, so a float32 Gram
(about 7 digits) would leave L an absolute error of about 1e-6·(1 + L); in float64 the product
is still tens of times faster than the D × D computation (benchmarks/bench_decorrelation.py).

Everything is numpy, on the CPU: reductions over the stimuli of a row-major (n, D) array are
row sums there, several times faster than torch's; and ``z @ z.T`` on one buffer is BLAS syrk
(half the multiply-adds of torch's general product). numpy's OpenBLAS also picks its kernels
by the CPU it finds, while torch's MKL falls back to slower ones on AMD processors: on an AMD
EPYC the float64 Gram of 512 × 18,432 z-scores took 0.14 s in numpy and 0.26 s in torch.
"""

from __future__ import annotations

import numpy as np

from neuroalign.analysis._arrays import as_matrix, check_finite
from neuroalign.analysis.decorrelation import EPS


def float_matrix(x, name: str = "x") -> np.ndarray:
    """x as a 2-D array: float32 kept as it is (the centring converts it exactly to float64
    on the fly, without a float64 copy of the input), anything else as float64."""
    dtype = np.float32 if str(getattr(x, "dtype", "")) in ("float32", "torch.float32") else np.float64
    return as_matrix(x, name=name, dtype=dtype)


def standardized(x, units: str, name: str = "x") -> tuple[np.ndarray, int]:
    """(Z, n_constant): float64 z-scores (ddof=1) of the columns of x that count — the varying
    ones, or all of them with the reference's ``std + EPS`` — and the number of constant
    columns. x is read, never modified.

    A column holds a NaN or an infinity exactly when its minimum or maximum does (both
    propagate), so the min/max that find the constant columns also check finiteness; the full
    check runs only to name the bad stimuli.
    """
    a = float_matrix(x, name)
    low, high = a.min(axis=0), a.max(axis=0)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        check_finite(a, name=name)
    varying = high != low
    n_constant = a.shape[1] - int(np.count_nonzero(varying))
    if n_constant and units == "varying":
        a = a[:, varying]
    z = np.subtract(a, a.mean(axis=0, dtype=np.float64), dtype=np.float64)
    std = np.sqrt(np.einsum("ij,ij->j", z, z) / (a.shape[0] - 1))
    z /= std if units == "varying" else std + EPS
    return z, n_constant


def self_gram(a: np.ndarray, units_first: bool = False) -> np.ndarray:
    """A Aᵀ, or AᵀA with ``units_first``: BLAS syrk (numpy recognises a product of one
    buffer with its own transpose)."""
    return a.T @ a if units_first else a @ a.T


def sq_norm(gram: np.ndarray) -> float:
    """The squared Frobenius norm, as one dot product over the flattened matrix."""
    flat = np.asarray(gram).ravel()
    return float(flat @ flat)


def gram_sq_norm(a: np.ndarray) -> float:
    """‖AAᵀ‖²_F = ‖AᵀA‖²_F, through the smaller of the two Gram matrices. a: (n, D) float64."""
    return sq_norm(self_gram(a, units_first=a.shape[1] <= a.shape[0]))


class GramSums:
    """What L and the participation ratio need, summed over feature chunks that each hold all
    n stimuli: the Gram ZZᵀ, Σ_i C_ii, Σ_i C_ii² and the unit counts.

    A layer added whole (``whole=True``) with fewer units than stimuli uses ZᵀZ instead:
    the same squared Frobenius norm, from a smaller matrix.
    """

    def __init__(self, units: str):
        self.units = units
        self.gram: np.ndarray | None = None
        self.n = self.d = self.n_constant = self.n_total = 0
        self.diagonal_sum = self.diagonal_sq = 0.0

    def add(self, z: np.ndarray, n_constant: int, whole: bool = False) -> None:
        """Adds one chunk of z-scores (n, d) from `standardized` and its constant count."""
        if self.gram is None:
            self.n = z.shape[0]
            self.gram = self_gram(z, units_first=whole and z.shape[1] < z.shape[0])
        else:  # in place (torch's addmm_ on the same memory): no second n × n matrix
            import torch

            t = torch.from_numpy(z)
            torch.from_numpy(self.gram).addmm_(t, t.T)
        self.d += z.shape[1]
        self.n_constant += n_constant
        self.n_total += z.shape[1] + (n_constant if self.units == "varying" else 0)
        if self.units == "all":  # C_ii = s²/(s + EPS)² < 1: summed, not assumed
            diagonal = np.einsum("ij,ij->j", z, z) / (self.n - 1)
            self.diagonal_sum += float(diagonal.sum())
            self.diagonal_sq += float((diagonal**2).sum())

    def metrics(self) -> dict:
        """L, participation_ratio (of the correlation matrix C), n_units, n_constant_units."""
        if self.gram is None:
            raise ValueError("x holds no features (an empty iterable of chunks)")
        return metrics_from_gram(self.gram, self.units, self.n, self.d, self.n_constant,
                                 self.n_total, self.diagonal_sum, self.diagonal_sq)


def metrics_from_gram(gram, units: str, n: int, d: int, n_constant: int, n_total: int,
                      diagonal_sum: float = 0.0, diagonal_sq: float = 0.0) -> dict:
    """`GramSums.metrics` from its parts: the Gram ZZᵀ (or ZᵀZ) of d z-scored units of n
    stimuli, and (units="all") Σ_i C_ii and Σ_i C_ii²."""
    if n_constant == n_total:
        raise ValueError(
            f"all {n_constant} units are constant over the stimuli; decorrelation is undefined"
        )
    total = sq_norm(gram)  # (n-1)² Σ_ij C_ij²
    if units == "varying":
        diagonal_sum = diagonal_sq = float(d)  # C_ii = 1 exactly
    return {
        "L": (total / (n - 1) ** 2 - diagonal_sq) / d,
        "participation_ratio": (diagonal_sum * (n - 1)) ** 2 / total,
        "n_units": d,
        "n_constant_units": n_constant,
    }


def abs_correlation_sum(zi: np.ndarray, zj: np.ndarray | None = None) -> float:
    """(n-1)·Σ|C_ab| over the unit pairs of two blocks of z-scores: a in zi, b in zj, or, with
    one block, the pairs a < b inside zi."""
    block = self_gram(zi, units_first=True) if zj is None else zi.T @ zj
    total = float(np.abs(block, out=block).sum())
    if zj is None:  # C is symmetric: the pairs a < b
        return (total - float(np.trace(block))) / 2
    return total


def mean_abs_r(z: np.ndarray, block_size: int) -> float:
    """Mean |C_ij| over pairs i<j, in column blocks of C (memory D × block_size)."""
    n, d = z.shape
    if d < 2:
        return float("nan")
    total = 0.0
    for start in range(0, d, block_size):
        block = z[:, start : start + block_size]
        total += abs_correlation_sum(block) + abs_correlation_sum(z[:, :start], block)
    return total / (n - 1) / (d * (d - 1) / 2)
