"""Latent decorrelation and dimensionality: the FocusMIM metric L, mean |r|, participation ratio.

FocusMIM (Weiler et al., github.com/RobinWeiler/FocusMIM) z-scores each latent unit over the
stimuli and measures how far the unit-by-unit correlation matrix is from the identity:

    Z = (X - mean) / std        (std with ddof=1, per unit, over the n stimuli)
    C = Zᵀ Z / (n - 1)          (D × D correlation matrix, C_ii = 1)
    L = (1/D) · Σ_{i≠j} C_ij²

The D × D matrix is never needed for L. Since ‖AᵀA‖²_F = tr(AᵀA AᵀA) = tr(AAᵀ AAᵀ) = ‖AAᵀ‖²_F,

    Σ_{i,j} C_ij² = ‖ZᵀZ‖²_F / (n-1)² = ‖ZZᵀ‖²_F / (n-1)²,

and the diagonal contributes Σ_i C_ii² = D (each column of Z has Σ_k z_ki² = n-1), so

    L = (‖ZZᵀ‖²_F / (n-1)² - D) / D.

We use whichever of the two Gram matrices is smaller (n × n when D > n, D × D otherwise).
The same Gram matrix gives the participation ratio of C, the dimensionality in the same
z-scored units as L (the nonzero eigenvalues λ of ZᵀZ and ZZᵀ coincide, and tr C = D):

    PR = (Σλ)² / Σλ² = tr(C)² / ‖C‖²_F = D² (n-1)² / ‖ZZᵀ‖²_F = D / (1 + L).

The participation ratio of the raw covariance (unstandardised units: a unit with a larger
variance weighs more) needs the Gram matrix of the centred X, a different matrix;
`participation_ratio(x)` computes it on request, `decorrelation` does not.

Precision: the z-scores and the Gram matrix are float64 (float32 input is converted exactly
while it is centred). L subtracts two nearly equal numbers when the units are nearly
decorrelated; a float32 Gram would leave it an absolute error of about 1e-6·(1 + L).

Which units count (``units``):

- ``"varying"`` (the default, and what the trainer logs in ``log.csv``): units that do not
  vary over the stimuli (max == min) have no z-score; they are left out of every standardised
  metric (D is the number of varying units) and counted in ``n_constant_units``.
- ``"all"``: the FocusMIM reference exactly: every unit is z-scored as
  ``(x - mean) / (std + 1e-5)`` (std with ddof=1), so a constant (dead) unit becomes 0, and
  L is divided by all D units. With the guard ``C_ii = s²/(s + 1e-5)²`` is not exactly 1, so
  the diagonal subtracted is ``Σ_i C_ii²`` computed from the column sums of squares, not D
  (and tr C = Σ_i C_ii in the participation ratio).
  (The reference divides by its fixed batch size minus one; here n - 1 of the given stimuli,
  the same for a full batch.)

Streaming: z-scoring is per unit over the stimuli, so a feature chunk holding all n stimuli
is standardised on its own, and ZZᵀ and Σ_i C_ii² are sums over chunks. With chunked input
(`chunk_size`, or an iterable of (n, chunk) arrays) only one n × n matrix and one chunk are
in memory, whatever D (mean |r| then re-reads chunk pairs: D²/2 products).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import xarray as xr

from neuroalign.analysis._arrays import check_finite
from neuroalign.analysis.dask_gram import as_dask
from neuroalign.analysis.streaming import is_chunks

__all__ = [
    "bootstrap_decorrelation",
    "decorrelation",
    "decorrelation_reference",
    "decorrelation_torch",
    "layerwise_decorrelation",
    "participation_ratio",
]

METRICS = ("L", "mean_abs_r", "participation_ratio")
UNITS = ("varying", "all")
#: The reference's guard in ``(x - mean) / (std + EPS)`` (units="all").
EPS = 1e-5


def _check_units(units: str) -> None:
    if units not in UNITS:
        raise ValueError(f"units must be one of {list(UNITS)}; got {units!r}")


def decorrelation_torch(z, units: str = "varying"):
    """The FocusMIM decorrelation L of a batch of latents, differentiable, on z's device.

    Computed in float32 (float64 if z is float64), with the sums of squares accumulated in
    float64 (the final subtraction ‖ZZᵀ‖²/(n-1)² - D cancels digits).

    Args:
        z: torch.Tensor (n, ...) — n ≥ 2 stimuli; trailing dims are flattened into D units.
        units: "varying" (units constant over the batch left out) or "all" (the reference's
            ``(x - mean) / (std + 1e-5)`` over every unit); see the module docstring.

    Returns:
        torch.Tensor, scalar, in z's float dtype (float32 for half/bfloat16 inputs).
    """
    import torch

    _check_units(units)
    if z.ndim < 2 or z.shape[0] < 2:
        raise ValueError(f"z must have shape (n >= 2, D, ...); got {tuple(z.shape)}")
    work = torch.float64 if z.dtype == torch.float64 else torch.float32
    z = z.reshape(z.shape[0], -1).to(work)
    n = z.shape[0]
    if units == "varying":
        varying = z.amax(dim=0) != z.amin(dim=0)
        if not bool(varying.all()):
            z = z[:, varying]
    d = z.shape[1]
    if d == 0:
        raise ValueError(
            "decorrelation needs at least one unit that varies; all units are constant"
        )
    mean = z.mean(dim=0, dtype=torch.float64).to(work)
    zc = z - mean
    ss = (zc * zc).sum(dim=0, dtype=torch.float64)
    std = torch.sqrt(ss / (n - 1)).to(work)
    zs = zc / (std if units == "varying" else std + EPS)
    gram = zs @ zs.T if d > n else zs.T @ zs
    total = (gram.to(torch.float64) ** 2).sum() / (n - 1) ** 2
    if units == "varying":
        return ((total - d) / d).to(work)
    diagonal = (zs * zs).sum(dim=0, dtype=torch.float64) / (n - 1)  # C_ii, < 1 by the guard
    return ((total - (diagonal**2).sum()) / d).to(work)


def participation_ratio(x, standardize: bool = False) -> float:
    """Participation ratio (Σλ)²/Σλ² of the covariance eigenvalues (effective dimensionality).

    Args:
        x: array (n_stimuli, n_units, ...) — trailing dims flattened.
        standardize: if True, of the correlation matrix (z-scored units, constant units left
            out; what `decorrelation` reports, D / (1 + L)); if False, of the raw covariance
            (a Gram matrix of its own: units with a larger variance weigh more).

    Returns:
        float between 1 and min(n - 1, n_units).
    """
    from neuroalign.analysis._decorrelation_gram import (
        GramSums,
        float_matrix,
        gram_sq_norm,
        standardized,
    )

    if standardize:
        z, n_constant = standardized(x, "varying")
        sums = GramSums("varying")
        sums.add(z, n_constant, whole=True)
        return sums.metrics()["participation_ratio"]
    a = float_matrix(x)
    check_finite(a)
    centred = np.subtract(a, a.mean(axis=0, dtype=np.float64), dtype=np.float64)
    trace = float(np.einsum("ij,ij->", centred, centred))
    if trace == 0.0:
        raise ValueError(
            "participation_ratio is undefined: all units are constant over the stimuli"
        )
    return trace**2 / gram_sq_norm(centred)


def _metrics_in_memory(x, units: str, mean_abs_r: bool, block_size: int) -> dict:
    """The keys of `decorrelation` for a layer in memory: one Gram of its z-scores."""
    from neuroalign.analysis import _decorrelation_gram as gram

    z, n_constant = gram.standardized(x, units)
    sums = gram.GramSums(units)
    sums.add(z, n_constant, whole=True)
    metrics = sums.metrics()
    return {
        "L": metrics["L"],
        "mean_abs_r": gram.mean_abs_r(z, block_size) if mean_abs_r else float("nan"),
        "participation_ratio": metrics["participation_ratio"],
        "n_units": metrics["n_units"],
        "n_constant_units": metrics["n_constant_units"],
    }


def _metrics_dask(x, units: str, mean_abs_r: bool, chunk_size: int) -> dict:
    """The keys of `decorrelation` for a dask array: its z-scores' Gram as a dask graph
    (mean |r|, which needs the D × D correlations, from pairs of feature chunks)."""
    from neuroalign.analysis._decorrelation_gram import metrics_from_gram
    from neuroalign.analysis.dask_gram import zscore_gram

    gram, stats = zscore_gram(x, units, EPS, chunk_size)
    varying, std = stats["varying"], stats["std"]
    n_constant = int(np.count_nonzero(~varying))
    d = len(varying) - n_constant if units == "varying" else len(varying)
    diagonal = std**2 / (std + EPS) ** 2  # C_ii of units="all"
    metrics = metrics_from_gram(gram, units, x.shape[0], d, n_constant, len(varying),
                                float(diagonal.sum()), float((diagonal**2).sum()))
    mean_r = float("nan")
    if mean_abs_r:  # D × D correlations: from pairs of feature chunks, in this process
        from neuroalign.analysis._decorrelation_stream import _streamed_mean_abs_r

        mean_r = _streamed_mean_abs_r(x.reshape(x.shape[0], -1), chunk_size, d, units)
    return {"mean_abs_r": mean_r, **metrics}


def decorrelation(
    x,
    *,
    units: str = "varying",
    mean_abs_r: bool = True,
    block_size: int = 1024,
    chunk_size: int | None = None,
) -> dict:
    """FocusMIM decorrelation L (via the Gram matrix), mean |r| and participation ratio.

    Computed in float64 from one Gram matrix of the z-scores (see the module docstring).
    Chunked input is streamed: the result equals the in-memory one to float64 rounding.

    Args:
        x: array (n_stimuli, n_units, ...) — numpy, torch, xarray/dask or a netCDF4 variable;
            trailing dims flattened — or an iterable of (n_stimuli, n_chunk) arrays (e.g.
            `streaming.layer_chunks(path, layer)`), streamed.
        units: "varying" (constant units left out) or "all" (the FocusMIM reference exactly:
            ``(x - mean) / (std + 1e-5)`` over every unit, divided by all D); see the module
            docstring.
        mean_abs_r: also compute the mean |C_ij| over unit pairs i<j (costs n·D²/2 multiply-adds,
            in column blocks). Streamed, it re-reads pairs of chunks, so x must be an array or
            a sequence of chunks (not a one-shot iterator).
        block_size: number of columns of C computed at once for mean_abs_r (in memory).
        chunk_size: if given, an array x is read and reduced this many units at a time instead
            of loaded whole (also the block size of mean |r|).

    Returns:
        dict with keys L, mean_abs_r (NaN if not computed), participation_ratio (of the
        correlation matrix C, the same units as L: D / (1 + L) with units="varying"; the raw
        covariance's is `participation_ratio(x)`), n_units (units in L), n_constant_units
        (units constant over the stimuli; left out with units="varying", included as zeros
        with units="all").
    """
    _check_units(units)
    if not isinstance(block_size, int | np.integer) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer; got {block_size!r}")
    if as_dask(x) is not None:
        return _metrics_dask(as_dask(x), units, mean_abs_r, chunk_size or 4096)
    if chunk_size is not None or is_chunks(x):
        from neuroalign.analysis._decorrelation_stream import streamed_decorrelation

        return streamed_decorrelation(x, mean_abs_r, chunk_size or 4096, units)
    return _metrics_in_memory(x, units, mean_abs_r, block_size)


def decorrelation_reference(x) -> dict:
    """The slow, obvious computation through the full D × D correlation matrix (for tests).

    Args:
        x: array (n_stimuli, n_units, ...).

    Returns:
        dict with keys L, mean_abs_r, participation_ratio (from the eigenvalues of C),
        n_units, n_constant_units; units="varying".
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    varying = (x != x[0]).any(axis=0)
    xv = x[:, varying]
    n, d = xv.shape
    z = (xv - xv.mean(axis=0)) / xv.std(axis=0, ddof=1)
    c = z.T @ z / (n - 1)
    off = ~np.eye(d, dtype=bool)
    eig = np.linalg.eigvalsh(c)
    return {
        "L": float((c[off] ** 2).sum() / d),
        "mean_abs_r": float(np.abs(c[np.triu_indices(d, 1)]).mean()) if d > 1 else float("nan"),
        "participation_ratio": float(eig.sum() ** 2 / (eig**2).sum()),
        "n_units": d,
        "n_constant_units": int((~varying).sum()),
    }


def bootstrap_decorrelation(
    x,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    *,
    units: str = "varying",
    mean_abs_r: bool = False,
    bias_correct: bool = True,
    block_size: int = 1024,
) -> dict:
    """Decorrelation metrics with percentile bootstrap intervals, resampling stimuli.

    These metrics depend on the number of distinct stimuli: L and mean |r| grow as n shrinks
    (spurious correlations; for D > n, L >= D/(n-1) - 1) and the participation ratio falls.
    A bootstrap sample holds only ~63% distinct stimuli, so the raw percentile interval sits
    far off the point estimate (at n = 512, D = 18,432 above it by about half of L). With
    `bias_correct` (default) the percentile interval is shifted by the bootstrap bias
    (mean of the resamples - point estimate): its width is the bootstrap spread, centred on
    the batch of n stimuli actually measured. Compare layers measured on the same n.

    Args:
        x: array (n_stimuli, n_units, ...).
        n_boot: number of bootstrap samples (stimuli drawn with replacement).
        seed: seed of the numpy Generator drawing the samples.
        ci: coverage of the interval, in (0, 1).
        units: "varying" or "all" (see `decorrelation`).
        mean_abs_r: also bootstrap mean |r| (n·D²/2 work per sample).
        bias_correct: shift the percentile interval by the bootstrap bias (see above);
            False gives the plain percentile interval of the resamples.
        block_size: see `decorrelation`.

    Returns:
        dict: the keys of `decorrelation` (point estimates on all stimuli), plus
        `<metric>_lo` / `<metric>_hi` for L, mean_abs_r and participation_ratio.
    """
    if not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer; got {n_boot!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci!r}")
    if is_chunks(x):
        raise ValueError(
            "bootstrap_decorrelation needs the layer in memory (each resample re-standardises "
            "every unit); got an iterable of chunks. Use decorrelation(x) for streamed input."
        )
    from neuroalign.analysis._decorrelation_gram import float_matrix

    x = float_matrix(x)
    result = decorrelation(x, units=units, mean_abs_r=mean_abs_r, block_size=block_size)
    rng = np.random.default_rng(seed)
    samples = {m: np.empty(n_boot) for m in METRICS}
    for b in range(n_boot):
        xb = x[rng.integers(0, x.shape[0], size=x.shape[0])]
        for m, value in _metrics_in_memory(xb, units, mean_abs_r, block_size).items():
            if m in samples:
                samples[m][b] = value
    q = [(1 - ci) / 2 * 100, (1 + ci) / 2 * 100]
    for m in METRICS:
        if np.isnan(samples[m]).all():
            result[f"{m}_lo"] = result[f"{m}_hi"] = float("nan")
            continue
        lo, hi = np.percentile(samples[m], q)
        shift = samples[m].mean() - result[m] if bias_correct else 0.0
        result[f"{m}_lo"], result[f"{m}_hi"] = float(lo - shift), float(hi - shift)
    return result


def layerwise_decorrelation(
    activations: Mapping[str, object] | Iterable[tuple[str, object]],
    *,
    units: str = "varying",
    mean_abs_r: bool = True,
    n_boot: int = 0,
    seed: int = 0,
    ci: float = 0.95,
    bias_correct: bool = True,
    block_size: int = 1024,
    chunk_size: int | None = None,
) -> xr.Dataset:
    """Decorrelation metrics for each layer, as a dataset with dim `layer`.

    Args:
        activations: {layer_name: array (n_stimuli, n_units, ...)} or an iterable of
            (layer_name, array) pairs; arrays are read one at a time. Without bootstrap an
            array may also be an iterable of feature chunks (see `decorrelation`).
        units: "varying" (constant units left out, the default) or "all" (the FocusMIM
            reference exactly); see `decorrelation`.
        mean_abs_r: compute mean |r| (see `decorrelation`).
        n_boot: if > 0, add percentile bootstrap bounds `<metric>_lo` / `<metric>_hi`.
        seed: bootstrap seed (the same for every layer).
        ci: bootstrap interval coverage.
        bias_correct: see `bootstrap_decorrelation`.
        block_size: see `decorrelation`.
        chunk_size: stream each layer this many units at a time (see `decorrelation`;
            bootstrap loads the layer whatever this is).

    Returns:
        xr.Dataset with dim `layer` and variables L, mean_abs_r, participation_ratio, n_units,
        n_constant_units (+ bounds when bootstrapped); attrs record units, n_boot, seed, ci.
    """
    _check_units(units)
    items = activations.items() if isinstance(activations, Mapping) else activations
    names, rows = [], []
    for name, x in items:
        try:
            if n_boot:
                row = bootstrap_decorrelation(
                    x,
                    n_boot,
                    seed,
                    ci,
                    units=units,
                    mean_abs_r=mean_abs_r,
                    bias_correct=bias_correct,
                    block_size=block_size,
                )
            else:
                row = decorrelation(
                    x,
                    units=units,
                    mean_abs_r=mean_abs_r,
                    block_size=block_size,
                    chunk_size=chunk_size,
                )
        except ValueError as err:
            raise ValueError(f"layer {name!r}: {err}") from err
        names.append(str(name))
        rows.append(row)
    if not rows:
        raise ValueError("activations is empty: give at least one (layer_name, array)")
    data = {key: ("layer", np.array([r[key] for r in rows])) for key in rows[0]}
    return xr.Dataset(
        data,
        coords={"layer": np.array(names, dtype=str)},
        attrs={
            "metric": "decorrelation",
            "units": units,
            "n_boot": int(n_boot),
            "seed": int(seed),
            "ci": float(ci),
            "bias_correct": int(bias_correct),
        },
    )
