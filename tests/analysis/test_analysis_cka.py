from itertools import permutations

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group

from neuroalign.analysis.cka import cka_from_grams, cka_matrix, gram, linear_cka


def representation(n=40, d=200, seed=0, shared=None):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 5)) if shared is None else shared
    return base @ rng.normal(size=(base.shape[1], d)) + rng.normal(size=(n, d))


def feature_space_cka(x, y):
    """Kornblith et al. (2019) eq. 5, with the D x D cross-covariance (independent of Gram form)."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def unbiased_hsic_by_quadruples(k, l):  # noqa: E741
    """Song et al. (2012) U-statistic: mean of h over ordered quadruples of distinct indices."""
    n = len(k)
    total = 0.0
    count = 0
    for i, j, q, r in permutations(range(n), 4):
        total += k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]
        count += 1
    return total / count


@pytest.mark.parametrize("n, d1, d2", [(30, 200, 150), (60, 8, 12)])
def test_gram_form_equals_feature_space_form(n, d1, d2):
    rng = np.random.default_rng(1)
    shared = rng.normal(size=(n, 3))
    x, y = representation(n, d1, 2, shared), representation(n, d2, 3, shared)
    assert linear_cka(x, y) == pytest.approx(feature_space_cka(x, y), rel=1e-10)
    assert 0.2 < linear_cka(x, y) < 1


def test_invariances_and_identity():
    x = representation(30, 25)
    q = ortho_group.rvs(25, random_state=4)
    assert linear_cka(x, x) == pytest.approx(1.0, rel=1e-12)
    assert linear_cka(x, 3.7 * x @ q + 5.0) == pytest.approx(1.0, rel=1e-10)  # rotate, scale, shift
    y = representation(30, 40, seed=5)
    assert linear_cka(x @ q, y) == pytest.approx(linear_cka(x, y), rel=1e-10)
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x), rel=1e-12)
    # not invariant to an anisotropic scaling
    scale = np.r_[np.full(5, 10.0), np.ones(20)]
    assert abs(linear_cka(x * scale, y) - linear_cka(x, y)) > 1e-3
    for debiased in (False, True):
        assert linear_cka(x, 2 * x @ q, debiased=debiased) == pytest.approx(1.0, rel=1e-10)


def test_debiased_matches_the_u_statistic():
    x, y = representation(7, 10, seed=6), representation(7, 5, seed=7)
    k, l = gram(x), gram(y)  # noqa: E741
    expected = unbiased_hsic_by_quadruples(k, l) / np.sqrt(
        unbiased_hsic_by_quadruples(k, k) * unbiased_hsic_by_quadruples(l, l)
    )
    assert cka_from_grams(k, l, debiased=True) == pytest.approx(expected, rel=1e-10)
    # the estimator does not depend on centring the features first
    raw_k, raw_l = x @ x.T, y @ y.T
    assert cka_from_grams(raw_k, raw_l, debiased=True) == pytest.approx(expected, rel=1e-8)


def test_debiased_is_near_zero_for_independent_wide_representations():
    rng = np.random.default_rng(8)
    biased, debiased = [], []
    for _ in range(10):
        x, y = rng.normal(size=(50, 500)), rng.normal(size=(50, 500))
        biased.append(linear_cka(x, y))
        debiased.append(linear_cka(x, y, debiased=True))
    assert np.mean(biased) > 0.8  # D >> n: biased CKA of unrelated representations is high
    assert abs(np.mean(debiased)) < 0.01


def test_streamed_and_torch_inputs():
    x, y = representation(20, 90, seed=9), representation(20, 33, seed=10)
    expected = linear_cka(x, y)
    chunks = [x[:, s : s + 16] for s in range(0, 90, 16)]
    assert linear_cka(chunks, y, chunk_size=7) == pytest.approx(expected, rel=1e-12)
    assert linear_cka(torch.from_numpy(x).reshape(20, 9, 10), y) == pytest.approx(
        expected, rel=1e-12
    )


def test_cka_matrix():
    shared = np.random.default_rng(11).normal(size=(25, 4))
    layers_a = {f"a{i}": representation(25, 30 + i, 20 + i, shared) for i in range(3)}
    layers_b = [(f"b{i}", representation(25, 20, 30 + i)) for i in range(2)]
    da = cka_matrix(layers_a, layers_b)
    assert da.dims == ("layer_a", "layer_b") and da.shape == (3, 2)
    assert list(da.layer_b.values) == ["b0", "b1"]
    assert float(da.sel(layer_a="a1", layer_b="b0")) == pytest.approx(
        linear_cka(layers_a["a1"], layers_b[0][1]), rel=1e-12
    )
    self_sim = cka_matrix(layers_a, debiased=True)
    np.testing.assert_allclose(np.diag(self_sim.values), 1.0, rtol=1e-12)
    np.testing.assert_allclose(self_sim.values, self_sim.values.T, rtol=1e-12)


def test_errors():
    x = representation(10, 5)
    with pytest.raises(ValueError, match="same stimuli"):
        linear_cka(x, x[:-1])
    with pytest.raises(ValueError, match="no variance"):
        linear_cka(x, np.ones((10, 4)))
    with pytest.raises(ValueError, match="at least 4 stimuli"):
        linear_cka(x[:3], x[:3], debiased=True)
    with pytest.raises(ValueError, match="layer 'bad'.*NaN"):
        cka_matrix({"ok": x, "bad": np.full((10, 3), np.nan)})
