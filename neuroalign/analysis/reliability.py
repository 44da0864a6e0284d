"""Noise ceilings of neuroids from repeated presentations: split-half reliability and NCSNR.

Both take an assembly with a ``repetition`` dim (see :mod:`neuroalign.data.assemblies`) or a
``(presentation, neuroid, repetition)`` array, NaN where a stimulus has fewer repeats, and
use the repeats each stimulus really has.

- :func:`split_half_reliability`: for each of ``n_splits`` random splits, every response's
  real repeats are shuffled (independently per stimulus and neuroid, from ``seed``) and cut
  into halves of ``n // 2`` and ``n - n // 2`` repeats; the Pearson r over stimuli between the
  two half means is averaged over splits (``split_half_r``), then Spearman–Brown corrected,
  ``2r / (1 + r)`` (``split_half_reliability``: the reliability of the mean of all repeats).
  Stimuli with fewer than two repeats for a neuroid are left out of that neuroid's splits.
- :func:`ncsnr` and :func:`ncsnr_ceiling` (Allen et al. 2022, the Natural Scenes Dataset):
  each neuroid's responses are z-scored over all its trials; the noise variance is the mean
  over stimuli (those with ≥ 2 repeats) of the across-repeat variance (ddof 1), the signal
  variance is ``1 - noise variance`` (set to 0 when negative), and
  ``ncsnr = sqrt(signal variance) / sqrt(noise variance)``. The ceiling on the explained
  variance of responses averaged over ``n`` trials is ``NC = 100 ncsnr² / (ncsnr² + 1/n)``
  in percent; with the real, unequal repeat counts ``1/n`` is the mean over stimuli of
  ``1/n_i`` (NSD's ``(A/3 + B/2 + C/1) / (A + B + C)``).

A noiseless model's r with the repeat-averaged responses is at most
``sqrt(split_half_reliability)``; its R² is at most ``NC / 100``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["ncsnr", "ncsnr_ceiling", "noise_ceilings", "split_half_reliability"]


def _trials(responses) -> tuple[np.ndarray, dict]:
    """(presentation, neuroid, repetition) float64 values and the neuroid coords to keep."""
    if isinstance(responses, xr.DataArray):
        if "repetition" not in responses.dims:
            raise ValueError(
                "noise ceilings need repeated presentations: the responses have no "
                f"'repetition' dim (dims {tuple(responses.dims)})"
            )
        responses = responses.transpose("presentation", "neuroid", "repetition")
        coords = {k: c for k, c in responses.coords.items() if c.dims == ("neuroid",)}
        return np.asarray(responses.values, dtype=np.float64), coords
    values = np.asarray(responses, dtype=np.float64)
    if values.ndim != 3:
        raise ValueError(
            "noise ceilings need (presentation, neuroid, repetition) responses; got shape "
            f"{values.shape}"
        )
    return values, {}


def _check_repeats(values: np.ndarray, needed: int) -> np.ndarray:
    """(presentation, neuroid) repeat counts; an error when a neuroid has too few."""
    counts = (~np.isnan(values)).sum(axis=2)
    usable = (counts >= 2).sum(axis=0)
    bad = np.flatnonzero(usable < needed)
    if bad.size:
        raise ValueError(
            f"{bad.size} neuroid(s) have fewer than {needed} stimuli with two or more repeats "
            f"(e.g. neuroid {int(bad[0])}: {int(usable[bad[0]])}); a noise ceiling needs them"
        )
    spread = np.nanmax(values, axis=(0, 2)) - np.nanmin(values, axis=(0, 2))
    constant = np.flatnonzero(spread == 0)
    if constant.size:
        raise ValueError(
            f"{constant.size} neuroid(s) have constant responses (e.g. neuroid "
            f"{int(constant[0])}); their noise ceiling is undefined"
        )
    return counts


def _per_neuroid(name: str, values: np.ndarray, coords: dict, attrs: dict) -> xr.DataArray:
    return xr.DataArray(values, dims=("neuroid",), coords=coords, name=name, attrs=attrs)


def _pearson_columns(a: np.ndarray, b: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``a`` and ``b`` over the rows where ``keep`` is True."""
    n = keep.sum(axis=0)
    a = np.where(keep, a, 0.0)
    b = np.where(keep, b, 0.0)
    am = a - np.where(keep, a.sum(axis=0) / n, 0.0)
    bm = b - np.where(keep, b.sum(axis=0) / n, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (am * bm).sum(axis=0) / np.sqrt((am**2).sum(axis=0) * (bm**2).sum(axis=0))


def split_half_reliability(responses, n_splits: int = 100, seed: int = 0) -> xr.Dataset:
    """Split-half reliability per neuroid over random splits, Spearman–Brown corrected.

    Args:
        responses: an assembly with a ``repetition`` dim, or a (presentation, neuroid,
            repetition) array; NaN marks a missing repeat.
        n_splits: how many random splits to average.
        seed: the seed of the splits.

    Returns:
        Dataset over ``neuroid``: ``split_half_r`` (mean over splits of the r between half
        means) and ``split_half_reliability`` (its Spearman–Brown correction ``2r/(1+r)``).

    Raises:
        ValueError: no repetitions, a neuroid with fewer than 3 stimuli with two or more
            repeats, or with constant responses.
    """
    values, coords = _trials(responses)
    counts = _check_repeats(values, 3)
    keep = counts >= 2
    rng = np.random.default_rng(seed)
    half = counts // 2
    total = np.zeros(values.shape[1])
    n_valid = np.zeros(values.shape[1])
    for _ in range(n_splits):
        keys = rng.random(values.shape)
        keys[np.isnan(values)] = np.inf  # missing repeats sort last
        ranks = np.argsort(np.argsort(keys, axis=2), axis=2)
        in_a = ranks < half[..., None]
        in_b = ~in_a & (ranks < counts[..., None])
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_a = np.where(in_a, values, 0.0).sum(axis=2) / half
            mean_b = np.where(in_b, values, 0.0).sum(axis=2) / (counts - half)
        r = _pearson_columns(mean_a, mean_b, keep)
        ok = np.isfinite(r)  # a half constant over stimuli in this split: skipped
        total[ok] += r[ok]
        n_valid += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        r = total / n_valid
    attrs = {"n_splits": n_splits, "seed": seed}
    return xr.Dataset({
        "split_half_r": _per_neuroid("split_half_r", r, coords, {
            **attrs, "long_name": "split-half r (mean over random splits)"}),
        "split_half_reliability": _per_neuroid("split_half_reliability", 2 * r / (1 + r), coords, {
            **attrs, "long_name": "split-half reliability, Spearman-Brown corrected"}),
    })


def ncsnr(responses) -> xr.DataArray:
    """The noise-ceiling signal-to-noise ratio per neuroid (Allen et al. 2022; see module)."""
    values, coords = _trials(responses)
    counts = _check_repeats(values, 1)
    present = ~np.isnan(values)
    n_trials = present.sum(axis=(0, 2))
    mean = np.nansum(values, axis=(0, 2)) / n_trials
    sd = np.sqrt(np.nansum((values - mean[None, :, None]) ** 2, axis=(0, 2)) / n_trials)
    z = (values - mean[None, :, None]) / sd[None, :, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        stim_mean = np.nansum(z, axis=2) / counts
        stim_var = np.nansum((z - stim_mean[..., None]) ** 2, axis=2) / (counts - 1)
    usable = counts >= 2
    noise_var = np.where(usable, stim_var, 0.0).sum(axis=0) / usable.sum(axis=0)
    signal_sd = np.sqrt(np.maximum(0.0, 1.0 - noise_var))
    return _per_neuroid("ncsnr", signal_sd / np.sqrt(noise_var), coords, {
        "long_name": "noise-ceiling signal-to-noise ratio (Allen et al. 2022)"})


def ncsnr_ceiling(responses, n_avg: int | None = None) -> xr.DataArray:
    """The NCSNR noise ceiling per neuroid, in percent of variance explainable.

    Args:
        responses: as :func:`ncsnr`.
        n_avg: the number of trials averaged in the data to predict; None: each stimulus's
            real repeat count (``1/n`` is then the mean over stimuli of ``1/n_i``).
    """
    values, coords = _trials(responses)
    snr = ncsnr(responses).values
    if n_avg is None:
        counts = (~np.isnan(values)).sum(axis=2)
        inverse_n = (1.0 / counts).mean(axis=0)
    else:
        if n_avg < 1:
            raise ValueError(f"n_avg must be a positive number of trials; got {n_avg}")
        inverse_n = np.full(values.shape[1], 1.0 / n_avg)
    nc = 100 * snr**2 / (snr**2 + inverse_n)
    return _per_neuroid("ncsnr_ceiling", nc, coords, {
        "long_name": "NCSNR noise ceiling", "units": "percent",
        "n_avg": "repeats of each stimulus" if n_avg is None else n_avg})


def noise_ceilings(
    responses, n_splits: int = 100, seed: int = 0, n_avg: int | None = None
) -> xr.Dataset:
    """Both ceilings per neuroid: :func:`split_half_reliability`'s two variables, ``ncsnr``
    and ``ncsnr_ceiling`` (percent)."""
    out = split_half_reliability(responses, n_splits, seed)
    out["ncsnr"] = ncsnr(responses)
    out["ncsnr_ceiling"] = ncsnr_ceiling(responses, n_avg)
    return out
