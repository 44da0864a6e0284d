import numpy as np
import pytest
import torch
import xarray as xr

from neuroalign.analysis.decorrelation import (
    bootstrap_decorrelation,
    decorrelation,
    decorrelation_reference,
    decorrelation_torch,
    layerwise_decorrelation,
    participation_ratio,
)


def correlated(n, d, seed=0):
    """Random units with shared structure (so L, |r| are far from their floor)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 5)) @ rng.normal(size=(5, d)) + rng.normal(size=(n, d))


def plain_loop_L(x):
    """L by the definition, with explicit loops over unit pairs (independent of both versions)."""
    x = x[:, x.std(axis=0) > 1e-12]
    n, d = x.shape
    z = (x - x.mean(0)) / x.std(0, ddof=1)
    total = 0.0
    for i in range(d):
        for j in range(d):
            if i != j:
                total += (z[:, i] @ z[:, j] / (n - 1)) ** 2
    return total / d


def focusmim_reference_L(x):
    """The FocusMIM reference's formula, written out on the D x D matrix over ALL units:
    (x - mean) / (std + 1e-5), C = ZᵀZ / (n - 1), L = sum of squared off-diagonals / D."""
    x = x.reshape(len(x), -1)
    n, d = x.shape
    z = (x - x.mean(0)) / (x.std(0, ddof=1) + 1e-5)
    c = z.T @ z / (n - 1)
    off = c[~np.eye(d, dtype=bool)]
    return (off**2).sum() / d, np.abs(c[np.triu_indices(d, 1)]).mean()


def with_dead_units(n, d, seed=0):
    """Correlated units, some of them dead (all zero, as a ReLU that never fires) or constant,
    and one with a tiny spread, where std + 1e-5 differs most from std."""
    x = correlated(n, d, seed)
    x[:, [2, 7, 11]] = 0.0
    x[:, 5] = 0.3
    x[:, 9] = 1e-5 * np.random.default_rng(seed + 1).normal(size=n)
    return x


@pytest.mark.parametrize("n, d", [(30, 80), (80, 30)])  # D > n and D < n
def test_units_all_is_the_reference_formula_with_dead_units(n, d):
    x = with_dead_units(n, d)
    expected_L, expected_r = focusmim_reference_L(x)
    out = decorrelation(x, units="all", block_size=7)
    assert out["L"] == pytest.approx(expected_L, rel=1e-9)
    assert out["mean_abs_r"] == pytest.approx(expected_r, rel=1e-9)
    assert out["n_units"] == d and out["n_constant_units"] == 4
    streamed = decorrelation(x, units="all", chunk_size=9)
    assert streamed["L"] == pytest.approx(expected_L, rel=1e-9)
    assert streamed["mean_abs_r"] == pytest.approx(expected_r, rel=1e-9)
    torch_L = decorrelation_torch(torch.from_numpy(x).reshape(n, -1), units="all")
    assert torch_L.item() == pytest.approx(expected_L, rel=1e-9)
    # the two choices differ on these data: dead units dilute L by D_all / D_varying, and the
    # tiny-spread unit loses most of its correlations to the 1e-5 guard
    varying = decorrelation(x)
    assert varying["n_units"] == d - 4
    assert varying["L"] > out["L"] * d / (d - 4) * 1.001


def test_units_all_bootstrap_and_layerwise():
    x = with_dead_units(40, 30)
    ds = layerwise_decorrelation({"a": x}, units="all", n_boot=5, seed=1)
    assert ds.attrs["units"] == "all"
    assert float(ds["L"].sel(layer="a")) == pytest.approx(focusmim_reference_L(x)[0], rel=1e-9)
    boot = bootstrap_decorrelation(x, n_boot=5, seed=1, units="all", bias_correct=False)
    rng = np.random.default_rng(1)
    values = [focusmim_reference_L(x[rng.integers(0, 40, size=40)])[0] for _ in range(5)]
    assert boot["L_lo"] == pytest.approx(np.percentile(values, 2.5), rel=1e-9)
    with pytest.raises(ValueError, match="units must be one of"):
        decorrelation(x, units="dead")
    with pytest.raises(ValueError, match="constant"):
        decorrelation(np.zeros((10, 4)), units="all")


@pytest.mark.parametrize("n, d", [(40, 150), (150, 40)])  # D > n and D < n
def test_gram_formula_matches_dxd_reference(n, d):
    x = correlated(n, d)
    fast = decorrelation(x, block_size=7)
    ref = decorrelation_reference(x)
    for key in ("L", "mean_abs_r", "participation_ratio"):
        assert fast[key] == pytest.approx(ref[key], rel=1e-6), key
    assert fast["n_units"] == d and fast["n_constant_units"] == 0


def test_reference_matches_plain_loop():
    x = correlated(12, 9, seed=3)
    assert decorrelation_reference(x)["L"] == pytest.approx(plain_loop_L(x), rel=1e-10)
    assert decorrelation(x)["L"] == pytest.approx(plain_loop_L(x), rel=1e-10)


def test_mean_abs_r_does_not_depend_on_block_size():
    x = correlated(30, 53)
    values = [decorrelation(x, block_size=b)["mean_abs_r"] for b in (1, 5, 53, 1000)]
    np.testing.assert_allclose(values, values[0], rtol=1e-12)


def test_exactly_decorrelated_columns_give_zero():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 16))
    q, _ = np.linalg.qr(x - x.mean(0))  # orthonormal columns with zero mean
    q *= rng.uniform(0.5, 3.0, size=16)  # unit scale must not matter
    q += 1e3  # nor an offset: centred in float64 before the product
    out = decorrelation(q)
    assert abs(out["L"]) < 1e-12
    assert out["mean_abs_r"] < 1e-12
    assert participation_ratio(q, standardize=True) == pytest.approx(16, rel=1e-12)


def test_L_floor_when_units_outnumber_stimuli():
    # rank(Z) <= n-1 bounds Σ C_ij² from below: L >= D/(n-1) - 1 whatever the data.
    n, d = 20, 300
    x = np.random.default_rng(2).normal(size=(n, d))
    assert decorrelation(x)["L"] >= d / (n - 1) - 1 - 1e-9


def test_constant_units_are_excluded_and_counted():
    x = correlated(30, 20)
    with_constant = np.concatenate([x, np.full((30, 3), 0.1), np.zeros((30, 1))], axis=1)
    out = decorrelation(with_constant)
    assert out["n_constant_units"] == 4 and out["n_units"] == 20
    clean = decorrelation(x)
    for key in ("L", "mean_abs_r"):
        assert np.isfinite(out[key])
        assert out[key] == pytest.approx(clean[key], rel=1e-12)
    assert decorrelation_torch(torch.from_numpy(with_constant)).item() == pytest.approx(
        clean["L"], rel=1e-10
    )


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="constant"):
        decorrelation(np.ones((10, 4)))
    x = correlated(10, 4)
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        decorrelation(x)
    with pytest.raises(ValueError, match="shape"):
        decorrelation(np.ones(5))
    with pytest.raises(ValueError, match="block_size"):
        decorrelation(correlated(10, 4), block_size=0)


@pytest.mark.parametrize("n, d", [(32, 100), (100, 32)])
def test_torch_matches_numpy(n, d):
    x = correlated(n, d, seed=4)
    expected = decorrelation(x)["L"]
    assert decorrelation_torch(torch.from_numpy(x)).item() == pytest.approx(expected, rel=1e-10)
    low = decorrelation_torch(torch.from_numpy(x).float())
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(expected, rel=1e-4)
    # trailing dims are flattened, as for conv feature maps (n, C, H, W)
    img = torch.from_numpy(x).reshape(n, d // 4, 2, 2)
    assert decorrelation_torch(img).item() == pytest.approx(expected, rel=1e-10)


def test_torch_version_is_differentiable():
    z = torch.from_numpy(correlated(8, 5, seed=5)).requires_grad_(True)
    assert torch.autograd.gradcheck(decorrelation_torch, (z,))
    loss = decorrelation_torch(z.detach().float().requires_grad_(True))
    loss.backward()


def test_participation_ratio_isotropic_and_rank_one():
    rng = np.random.default_rng(6)
    iso = rng.normal(size=(4000, 20))
    assert participation_ratio(iso) == pytest.approx(20, rel=0.05)
    rank_one = rng.normal(size=(50, 1)) @ rng.normal(size=(1, 30))
    assert participation_ratio(rank_one) == pytest.approx(1.0, rel=1e-10)
    assert participation_ratio(rank_one, standardize=True) == pytest.approx(1.0, rel=1e-10)


def test_participation_ratio_raw_vs_standardized():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(500, 10))
    x[:, 0] *= 100  # one loud unit dominates the raw covariance, not the correlations
    assert participation_ratio(x) < 1.1
    assert participation_ratio(x, standardize=True) > 9
    eig = np.linalg.eigvalsh(np.corrcoef(x, rowvar=False))
    assert participation_ratio(x, standardize=True) == pytest.approx(
        eig.sum() ** 2 / (eig**2).sum(), rel=1e-10
    )


def correlation_pr(c):
    eig = np.linalg.eigvalsh(c)
    return eig.sum() ** 2 / (eig**2).sum()


@pytest.mark.parametrize("n, d", [(30, 80), (80, 30)])
def test_reported_participation_ratio_is_of_the_correlation_matrix(n, d):
    # the same z-scored units as L, from the same Gram: D / (1 + L); the raw covariance's
    # participation ratio is participation_ratio(x), a different number
    x = correlated(n, d, seed=9)
    x[:, 0] *= 50  # a loud unit: weighs on the covariance, not on the correlations
    out = decorrelation(x)
    expected = correlation_pr(np.corrcoef(x, rowvar=False))
    assert out["participation_ratio"] == pytest.approx(expected, rel=1e-9)
    assert out["participation_ratio"] == pytest.approx(d / (1 + out["L"]), rel=1e-12)
    assert participation_ratio(x, standardize=True) == pytest.approx(expected, rel=1e-9)
    assert decorrelation(x, chunk_size=7)["participation_ratio"] == pytest.approx(
        expected, rel=1e-10
    )
    eig = np.linalg.eigvalsh(np.cov(x, rowvar=False))
    assert participation_ratio(x) == pytest.approx(eig.sum() ** 2 / (eig**2).sum(), rel=1e-9)
    assert abs(participation_ratio(x) - expected) > 0.1 * expected
    # units="all": tr C = Σ C_ii of the guarded z-scores, dead units included as zeros
    x = with_dead_units(n, d)
    z = (x - x.mean(0)) / (x.std(0, ddof=1) + 1e-5)
    expected_all = correlation_pr(z.T @ z / (n - 1))
    for out in (decorrelation(x, units="all"), decorrelation(x, units="all", chunk_size=9)):
        assert out["participation_ratio"] == pytest.approx(expected_all, rel=1e-9)


def test_float32_input_is_computed_in_float64():
    x = correlated(40, 90, seed=10).astype(np.float32)
    single, double = decorrelation(x), decorrelation(x.astype(np.float64))
    for key in ("L", "mean_abs_r", "participation_ratio"):
        assert single[key] == pytest.approx(double[key], rel=1e-12), key
    assert decorrelation(torch.from_numpy(x))["L"] == pytest.approx(double["L"], rel=1e-12)
    ref = decorrelation_reference(x)
    assert single["L"] == pytest.approx(ref["L"], rel=1e-10)


def test_bootstrap_is_seeded_and_covers_the_estimate():
    x = correlated(60, 40)
    a = bootstrap_decorrelation(x, n_boot=50, seed=3, mean_abs_r=True)
    b = bootstrap_decorrelation(x, n_boot=50, seed=3, mean_abs_r=True)
    c = bootstrap_decorrelation(x, n_boot=50, seed=4, mean_abs_r=True)
    assert a == b and a["L_lo"] != c["L_lo"]
    assert a["L"] == decorrelation(x)["L"]
    for m in ("L", "mean_abs_r", "participation_ratio"):
        assert a[f"{m}_lo"] < a[m] < a[f"{m}_hi"], m


def test_bootstrap_percentiles_by_hand():
    x = correlated(40, 30, seed=8)
    raw = bootstrap_decorrelation(x, n_boot=40, seed=2, ci=0.8, bias_correct=False)
    shifted = bootstrap_decorrelation(x, n_boot=40, seed=2, ci=0.8)
    rng = np.random.default_rng(2)
    values = [decorrelation_reference(x[rng.integers(0, 40, size=40)])["L"] for _ in range(40)]
    assert raw["L_lo"] == pytest.approx(np.percentile(values, 10), rel=1e-9)
    assert raw["L_hi"] == pytest.approx(np.percentile(values, 90), rel=1e-9)
    assert np.mean(values) > raw["L"]  # duplicated stimuli inflate L: why the default corrects
    bias = np.mean(values) - raw["L"]
    assert shifted["L_lo"] == pytest.approx(raw["L_lo"] - bias, rel=1e-9)
    assert shifted["L_hi"] == pytest.approx(raw["L_hi"] - bias, rel=1e-9)
    rng = np.random.default_rng(2)
    prs = [
        decorrelation_reference(x[rng.integers(0, 40, size=40)])["participation_ratio"]
        for _ in range(40)
    ]
    assert raw["participation_ratio_lo"] == pytest.approx(np.percentile(prs, 10), rel=1e-9)


def test_layerwise_dataset_and_netcdf_round_trip(tmp_path):
    layers = {
        "conv1": correlated(30, 48, seed=1).reshape(30, 3, 4, 4),
        "conv2": correlated(30, 20, seed=2),
    }
    ds = layerwise_decorrelation(activations=layers, n_boot=20, seed=1)
    assert ds.attrs["units"] == "varying"
    assert ds.sizes == {"layer": 2}
    assert list(ds.layer.values) == ["conv1", "conv2"]
    for name, x in layers.items():
        assert float(ds["L"].sel(layer=name)) == pytest.approx(decorrelation(x)["L"], rel=1e-12)
    assert {"L_lo", "L_hi", "participation_ratio_lo", "n_constant_units"} <= set(ds.data_vars)
    ds.to_netcdf(tmp_path / "decor.nc")
    with xr.open_dataset(tmp_path / "decor.nc") as back:
        xr.testing.assert_identical(back.load(), ds)
    plain = layerwise_decorrelation(list(layers.items()), mean_abs_r=False)
    assert "L_lo" not in plain and np.isnan(plain["mean_abs_r"]).all()
    with pytest.raises(ValueError, match="conv9"):
        layerwise_decorrelation({"conv9": np.ones((5, 3))})
