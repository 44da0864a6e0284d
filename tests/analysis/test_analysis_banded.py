"""Banded ridge: scikit-learn's Ridge at the chosen band penalties, primal = dual, and the
unique variance of a space the responses ignore ≈ 0."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from neuroalign.analysis.banded import BandedRidgeEncoder, banded_encoding

ALPHAS = np.logspace(-2, 6, 9)


def _spaces(n=90, na=8, nb=12, n_targets=4, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, na)) + 1
    b = rng.standard_normal((n, nb)) - 2
    y = a @ rng.standard_normal((na, n_targets)) + rng.standard_normal((n, n_targets)) + 3
    return a, b, y


@pytest.mark.parametrize("solver", ["primal", "kernel"])
def test_equals_sklearn_ridge_at_band_alphas(solver):
    a, b, y = _spaces(seed=1)
    train, test = slice(0, 70), slice(70, None)
    model = BandedRidgeEncoder(ALPHAS, n_iter=20, solver=solver, seed=2).fit(
        [a[train], b[train]], y[train])
    assert model.solver_ == solver and model.band_alphas_.shape == (2, 4)
    reference = []
    for j in range(y.shape[1]):
        scale = 1 / np.sqrt(model.band_alphas_[:, j])
        z = np.hstack([a * scale[0], b * scale[1]])
        reference.append(Ridge(alpha=1.0).fit(z[train], y[train, j]).predict(z[test]))
    predicted = model.predict([a[test], b[test]])
    np.testing.assert_allclose(predicted, np.column_stack(reference), atol=1e-6, rtol=0)
    parts = model.predict([a[test], b[test]], split=True)
    np.testing.assert_allclose(parts.sum(axis=0) + model.intercept_, predicted, atol=1e-10)


def test_primal_and_dual_agree():
    a, b, y = _spaces(seed=3)
    kw = {"alphas": ALPHAS, "n_iter": 10, "seed": 0}
    primal = BandedRidgeEncoder(solver="primal", **kw).fit([a, b], y)
    dual = BandedRidgeEncoder(solver="kernel", **kw).fit([a, b], y)
    np.testing.assert_allclose(primal.band_alphas_, dual.band_alphas_, rtol=1e-6)
    np.testing.assert_allclose(primal.predict([a, b]), dual.predict([a, b]), atol=1e-6)


def test_unique_variance_of_an_ignored_space_is_zero():
    a, b, y = _spaces(n=120, seed=4)
    ds = banded_encoding({"A": a, "B": b}, y, folds=4, alphas=ALPHAS, n_iter=20)
    assert ds["r2_unique"].dims == ("space", "neuroid")
    assert ds["band_alpha"].dims == ("space", "fold", "neuroid")
    joint, unique = ds["r2_joint"].values, ds["r2_unique"]
    assert (joint > 0.5).all()
    np.testing.assert_allclose(unique.sel(space="B"), 0, atol=0.03)
    np.testing.assert_allclose(unique.sel(space="A"), joint, atol=0.05)
    split = ds["r2_split"]
    assert (split.sel(space="A") > 0.9 * joint).all()
    np.testing.assert_allclose(split.sum("space") + ds["r2_split_intercept"], joint, atol=1e-12)
    assert (np.abs(ds["r2_split_intercept"]) < 0.05).all()
    np.testing.assert_allclose(ds["r2_shared"], joint - unique.sum("space"))


def test_bad_input():
    a, b, y = _spaces()
    with pytest.raises(ValueError, match="2 to 6"):
        banded_encoding({"A": a}, y)
    with pytest.raises(ValueError, match="stimuli"):
        banded_encoding({"A": a, "B": b[:-1]}, y)
