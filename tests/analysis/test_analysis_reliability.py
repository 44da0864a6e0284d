"""Noise ceilings from repetitions: plain numpy references written here, and Cowley V4."""

import numpy as np
import pytest

from neuroalign.analysis.reliability import (
    ncsnr,
    ncsnr_ceiling,
    noise_ceilings,
    split_half_reliability,
)
from neuroalign.data import make_assembly


def _data(seed=0, n_stim=40, n_neuroid=6, n_rep=7):
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal((n_stim, n_neuroid, 1)) * np.linspace(0.2, 2, n_neuroid)[:, None]
    values = signal + rng.standard_normal((n_stim, n_neuroid, n_rep))
    counts = rng.integers(2, n_rep + 1, n_stim)
    counts[0] = 1  # one stimulus with a single repeat: left out of the splits
    for i, c in enumerate(counts):
        values[i, :, c:] = np.nan
    return values


def _split_half_loops(values, n_splits, seed):
    """The definition, loop by loop, drawing the same keys as the library."""
    rng = np.random.default_rng(seed)
    n_stim, n_neuroid, _ = values.shape
    rs = np.zeros((n_splits, n_neuroid))
    for s in range(n_splits):
        keys = rng.random(values.shape)
        for j in range(n_neuroid):
            a, b = [], []
            for i in range(n_stim):
                real = np.flatnonzero(~np.isnan(values[i, j]))
                if len(real) < 2:
                    continue
                order = real[np.argsort(keys[i, j, real])]
                h = len(real) // 2
                a.append(values[i, j, order[:h]].mean())
                b.append(values[i, j, order[h:]].mean())
            rs[s, j] = np.corrcoef(a, b)[0, 1]
    r = rs.mean(axis=0)
    return r, 2 * r / (1 + r)


def _ncsnr_plain(values, n_avg=None):
    out, nc = [], []
    for j in range(values.shape[1]):
        trials = values[:, j]
        z = (trials - np.nanmean(trials)) / np.nanstd(trials)
        counts = (~np.isnan(trials)).sum(axis=1)
        noise = np.mean([np.nanvar(row, ddof=1) for row, c in zip(z, counts, strict=True) if c >= 2])
        snr = np.sqrt(max(0.0, 1 - noise)) / np.sqrt(noise)
        out.append(snr)
        inv = np.mean(1 / counts) if n_avg is None else 1 / n_avg
        nc.append(100 * snr**2 / (snr**2 + inv))
    return np.array(out), np.array(nc)


def test_split_half_matches_loops():
    values = _data()
    got = split_half_reliability(values, n_splits=5, seed=3)
    r, sb = _split_half_loops(values, 5, 3)
    np.testing.assert_allclose(got["split_half_r"].values, r, rtol=1e-12)
    np.testing.assert_allclose(got["split_half_reliability"].values, sb, rtol=1e-12)
    assert np.all(np.diff(got["split_half_r"].values) > -0.2)  # more signal, more reliable


def test_ncsnr_matches_plain():
    values = _data(1)
    snr, nc = _ncsnr_plain(values)
    np.testing.assert_allclose(ncsnr(values).values, snr, rtol=1e-12)
    np.testing.assert_allclose(ncsnr_ceiling(values).values, nc, rtol=1e-12)
    _, nc3 = _ncsnr_plain(values, 3)
    np.testing.assert_allclose(ncsnr_ceiling(values, 3).values, nc3, rtol=1e-12)


def test_assembly_input_keeps_neuroid_coords():
    values = _data(2)
    da = make_assembly(values, [f"s{i}" for i in range(40)], region="V4")
    out = noise_ceilings(da, n_splits=3)
    assert set(out.data_vars) == {"split_half_r", "split_half_reliability", "ncsnr",
                                  "ncsnr_ceiling"}
    assert list(out["region"].values) == ["V4"] * 6


def test_bad_input():
    values = _data()
    with pytest.raises(ValueError, match="no 'repetition' dim"):
        split_half_reliability(make_assembly(values[:, :, 0], [f"s{i}" for i in range(40)]))
    single = values.copy()
    single[:, 2, 1:] = np.nan
    with pytest.raises(ValueError, match="fewer than 3 stimuli with two or more repeats"):
        split_half_reliability(single)
    constant = values.copy()
    constant[:, 4] = np.where(np.isnan(constant[:, 4]), np.nan, 1.0)
    with pytest.raises(ValueError, match="constant responses .e.g. neuroid 4"):
        ncsnr(constant)


@pytest.mark.slow
def test_cowley_split_half(shared_data):
    from neuroalign.data import load_brain_responses

    out = noise_ceilings(load_brain_responses("cowley-v4"), n_splits=100, seed=0)
    assert abs(float(out["split_half_r"].median()) - 0.61) < 0.02  # the data README's value
    assert abs(float(out["split_half_reliability"].median()) - 0.76) < 0.02
    # the two ceilings agree: NC/100 (repeat counts as recorded) ≈ Spearman–Brown reliability
    assert abs(float(out["ncsnr_ceiling"].median()) / 100 - 0.76) < 0.03
