"""Encoding models: scikit-learn's Ridge at the chosen alphas, primal = dual, no leakage on
Cowley V4 (shuffled images ≈ 0, a Gabor-energy bank written here clearly positive)."""

import numpy as np
import pytest
from scipy.signal import fftconvolve
from sklearn.linear_model import Ridge

from neuroalign.analysis.encoding import (
    RidgeEncoder,
    encoding_folds,
    layerwise_encoding,
    pearson_r,
)
from neuroalign.data import make_assembly


def _problem(n=60, n_features=20, n_targets=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_features)) + 2
    w = rng.standard_normal((n_features, n_targets)) * np.linspace(0, 1, n_targets)
    y = x @ w + rng.standard_normal((n, n_targets)) * 2 + 5
    return x, y, rng.standard_normal((25, n_features)) + 2


@pytest.mark.parametrize("n_features", [15, 150])
@pytest.mark.parametrize("solver", ["primal", "kernel"])
def test_equals_sklearn_ridge_at_chosen_alphas(n_features, solver):
    x, y, x_test = _problem(n_features=n_features)
    model = RidgeEncoder(solver=solver, seed=1).fit(x, y)
    assert model.solver_ == solver
    assert len(set(model.best_alphas_)) > 1  # one alpha per target
    reference = np.column_stack([
        Ridge(alpha=a).fit(x, y[:, j]).predict(x_test) for j, a in enumerate(model.best_alphas_)
    ])
    np.testing.assert_allclose(model.predict(x_test), reference, atol=1e-6, rtol=0)


def test_primal_and_dual_agree_and_auto_picks_by_shape():
    for n_features, expected in ((15, "primal"), (150, "kernel")):
        x, y, x_test = _problem(n_features=n_features, seed=2)
        primal = RidgeEncoder(solver="primal").fit(x, y)
        dual = RidgeEncoder(solver="kernel").fit(x, y)
        np.testing.assert_array_equal(primal.best_alphas_, dual.best_alphas_)
        np.testing.assert_allclose(primal.predict(x_test), dual.predict(x_test), atol=1e-8)
        # the dual form's primal weights, formed only on request, are the primal form's
        np.testing.assert_allclose(dual.coef_, primal.coef_, atol=1e-8)
        np.testing.assert_allclose(dual.intercept_, primal.intercept_, atol=1e-7)
        np.testing.assert_allclose(x_test @ dual.coef_ + dual.intercept_, dual.predict(x_test),
                                   atol=1e-8)
        assert RidgeEncoder().fit(x, y).solver_ == expected


def test_torch_backend_close_to_numpy():
    x, y, x_test = _problem(n_features=40, seed=3)
    ours = RidgeEncoder(alphas=np.logspace(-1, 3, 9)).fit(x, y)
    torch_cpu = RidgeEncoder(alphas=np.logspace(-1, 3, 9), device="cpu").fit(x, y)
    np.testing.assert_allclose(torch_cpu.best_alphas_, ours.best_alphas_, rtol=1e-4)
    np.testing.assert_allclose(torch_cpu.predict(x_test), ours.predict(x_test), atol=1e-3)
    assert RidgeEncoder().get_params()["solver"] == "auto"  # scikit-learn's parameter API


def _trials(y, n_rep=4, seed=0):
    rng = np.random.default_rng(seed)
    trials = y[:, :, None] + rng.standard_normal((*y.shape, n_rep))
    trials[::7, :, 3] = np.nan  # missing repeats
    return trials


def test_layerwise_encoding_dataset_and_id_matching():
    x, y, _ = _problem(n=80, seed=4)
    ids = np.array([f"s{i:02d}" for i in range(80)])
    responses = make_assembly(_trials(y), ids, region="V4")
    order = np.random.default_rng(0).permutation(80)  # activations in another order
    acts = {"good": x[order], "noise": np.random.default_rng(1).standard_normal((80, 10))}
    ds = layerwise_encoding(acts, responses, stimulus_id=ids[order], folds=4, n_splits=10)
    assert ds["r"].dims == ("layer", "neuroid") and ds.sizes["fold"] == 4
    assert ds["alpha"].dims == ("layer", "fold", "neuroid")
    assert np.bincount(ds["fold"].values).tolist() == [20] * 4
    assert list(ds["stimulus_id"].values) == list(ids[order])
    good, noise = ds["r"].sel(layer="good").values, ds["r"].sel(layer="noise").values
    assert good[-1] > 0.5 and abs(np.median(noise)) < 0.3
    np.testing.assert_allclose(
        ds["r_corrected"].values, ds["r"].values / np.sqrt(ds["split_half_reliability"].values))
    assert list(ds["region"].values) == ["V4"] * 6
    # the same without repetitions: no ceilings, said in the attributes
    plain = layerwise_encoding({"good": x}, y, folds=4)
    assert "r_corrected" not in plain and "no repetitions" in plain.attrs["noise_ceiling"]


def test_folds_are_a_partition():
    fold = encoding_folds(23, 5, seed=0)
    assert sorted(np.bincount(fold)) == [4, 4, 5, 5, 5]


def test_bad_input():
    x, y, _ = _problem(n=30)
    ids = np.array([f"s{i}" for i in range(30)])
    responses = make_assembly(y, ids)
    with pytest.raises(ValueError, match="not in the responses, e.g. \\['t0', 't1', 't2'\\]"):
        layerwise_encoding({"a": x}, responses, stimulus_id=[f"t{i}" for i in range(30)])
    with pytest.raises(ValueError, match="folds must be between 2 and the 30 stimuli"):
        layerwise_encoding({"a": x}, responses, folds=31)
    flat = y.copy()
    flat[:, 2] = 1.0
    with pytest.raises(ValueError, match="constant responses over stimuli .e.g. neuroid 2"):
        layerwise_encoding({"a": x}, make_assembly(flat, ids))
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="layer 'a' holds 1 NaN"):  # primal form
        layerwise_encoding({"a": bad}, responses, solver="primal")
    with pytest.raises(ValueError, match="layer 'a' holds NaN or infinite values in 1 stimuli"):
        layerwise_encoding({"a": bad}, responses, solver="kernel")  # seen in the kernel
    with pytest.raises(ValueError, match="x holds NaN or infinite values in 1 stimuli"):
        RidgeEncoder(solver="kernel").fit(bad, y)
    with pytest.raises(ValueError, match="layer 'a' has 29 stimuli"):
        layerwise_encoding({"a": x[:29]}, responses)


def test_pearson_r():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((50, 3)), rng.standard_normal((50, 3))
    np.testing.assert_allclose(pearson_r(a, b), [np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(3)])


def gabor_energy(images: np.ndarray, grid: int = 7) -> np.ndarray:
    """A small Gabor-energy bank (3 wavelengths × 4 orientations, quadrature pairs) pooled on
    a grid × grid map, plus the mean colour in each grid cell; columns z-scored."""
    n = len(images)
    gray = images.astype(np.float64).mean(axis=3)
    gray = gray.reshape(n, 56, 2, 56, 2).mean(axis=(2, 4)) / 255.0  # 112 -> 56 pixels
    gray -= gray.mean(axis=(1, 2), keepdims=True)
    yy, xx = np.mgrid[-7:8, -7:8].astype(float)
    features = []
    for wavelength in (4.0, 8.0, 16.0):
        envelope = np.exp(-(xx**2 + yy**2) / (2 * (wavelength / 2) ** 2))
        for theta in np.arange(4) * np.pi / 4:
            phase = 2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / wavelength
            even = envelope * np.cos(phase)
            even -= even.mean()
            odd = envelope * np.sin(phase)
            energy = sum(
                fftconvolve(gray, kernel[None], mode="same", axes=(1, 2)) ** 2
                for kernel in (even, odd))
            cell = 56 // grid
            features.append(
                np.sqrt(energy).reshape(n, grid, cell, grid, cell).mean(axis=(2, 4)).reshape(n, -1))
    cell = images.shape[1] // grid
    features.append(images.reshape(n, grid, cell, grid, cell, 3).mean(axis=(2, 4)).reshape(n, -1))
    x = np.concatenate(features, axis=1)
    return (x - x.mean(axis=0)) / x.std(axis=0)


@pytest.mark.slow
def test_cowley_no_leakage_and_gabor_energy(shared_data):
    from neuroalign.data import load_brain_responses, load_stimulus_set

    responses = load_brain_responses("cowley-v4")
    stimuli = load_stimulus_set("cowley-v4")
    x = gabor_energy(stimuli.images)
    shuffled = x[np.random.default_rng(0).permutation(len(x))]
    ds = layerwise_encoding({"gabor": x, "shuffled": shuffled}, responses,
                            stimulus_id=stimuli.stimulus_id, n_splits=20)
    median = ds["r"].median("neuroid")
    assert float(median.sel(layer="gabor")) > 0.4  # ~0.49 (the data README: ~0.47)
    assert abs(float(median.sel(layer="shuffled"))) < 0.1
    assert float(ds["r_corrected"].sel(layer="gabor").median()) > float(median.sel(layer="gabor"))
