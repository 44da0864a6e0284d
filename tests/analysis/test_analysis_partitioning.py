from itertools import combinations

import numpy as np
import pytest
import rsatoolbox
import scipy.stats
import xarray as xr
from sklearn.linear_model import LinearRegression

from neuroalign.analysis.partitioning import commonality, r_squared, variance_partitioning

N = 20
IDS = [f"s{i:02d}" for i in range(N)]
N_PAIRS = N * (N - 1) // 2


def rdms(vectors, **descriptors):
    return rsatoolbox.rdm.RDMs(
        np.atleast_2d(vectors),
        rdm_descriptors={k: list(v) for k, v in descriptors.items()},
        pattern_descriptors={"stimulus_id": IDS},
        descriptors={"name": "toy IT"},
    )


@pytest.fixture(scope="module")
def toy():
    """Three correlated model RDMs and a brain RDM built from two of them plus noise."""
    rng = np.random.default_rng(0)
    common = rng.normal(size=N_PAIRS)
    a = common + rng.normal(size=N_PAIRS)
    b = common + rng.normal(size=N_PAIRS)
    c = rng.normal(size=N_PAIRS)
    brain = 1.0 * a + 0.5 * b + 2.0 * rng.normal(size=(3, N_PAIRS))  # 3 subjects
    models = rdms(np.stack([a, b, c]), model=["A", "B", "C"])
    return rdms(brain, subject=["x", "y", "z"]), models


def test_r_squared_equals_sklearn(toy):
    brain, models = toy
    y = brain.get_vectors().mean(0)
    x = models.get_vectors().T
    for cols in ([0], [0, 2], [0, 1, 2]):
        expected = LinearRegression().fit(x[:, cols], y).score(x[:, cols], y)
        assert r_squared(y, x[:, cols]) == pytest.approx(expected, rel=1e-10)


def test_partitioning_matches_sklearn_r2_and_textbook_commonalities(toy):
    brain, models = toy
    ds = variance_partitioning(brain, models)
    y = brain.get_vectors().mean(0)
    x = dict(zip("ABC", models.get_vectors(), strict=True))

    def sk(*names):
        design = np.column_stack([x[m] for m in names])
        return LinearRegression().fit(design, y).score(design, y)

    for size in (1, 2, 3):
        for subset in combinations("ABC", size):
            assert float(ds.r2.sel(subset="+".join(subset))) == pytest.approx(sk(*subset), rel=1e-9)
    part = {str(p): float(v) for p, v in zip(ds.part.values, ds.commonality.values, strict=True)}
    # the textbook three-predictor commonality formulas
    assert part["A"] == pytest.approx(sk("A", "B", "C") - sk("B", "C"), abs=1e-12)
    assert part["A&B"] == pytest.approx(
        -sk("C") + sk("A", "C") + sk("B", "C") - sk("A", "B", "C"), abs=1e-12
    )
    assert part["A&B&C"] == pytest.approx(
        sk("A")
        + sk("B")
        + sk("C")
        - sk("A", "B")
        - sk("A", "C")
        - sk("B", "C")
        + sk("A", "B", "C"),
        abs=1e-12,
    )
    # identities: all parts sum to the full R²; a model's parts sum to its own R²
    assert ds.commonality.sum().item() == pytest.approx(float(ds.total_r2), abs=1e-12)
    assert float(ds.total_r2) == pytest.approx(sk("A", "B", "C"), rel=1e-9)
    for m in "ABC":
        own = sum(v for p, v in part.items() if m in p.split("&"))
        assert own == pytest.approx(sk(m), abs=1e-12)
    np.testing.assert_allclose(ds.fraction.sum(), 1.0, rtol=1e-12)
    # the planted structure: A and B share a lot, C (irrelevant) explains ~nothing
    assert part["A&B"] > 0.05 and abs(part["C"]) < 0.01
    assert list(ds.n_models.values) == [1, 1, 1, 2, 2, 2, 3]


def test_two_models_and_orthogonal_predictors():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, N_PAIRS))
    a, b = a - a.mean(), b - b.mean()
    b -= a * (a @ b) / (a @ a)  # uncorrelated with a
    brain = rdms(a + b + 0.1 * rng.normal(size=N_PAIRS))
    ds = variance_partitioning(brain, {"A": rdms(a), "B": rdms(b)})
    assert list(ds.part.values) == ["A", "B", "A&B"]
    # uncorrelated predictors share nothing: unique parts are their own R²
    assert float(ds.commonality.sel(part="A&B")) == pytest.approx(0, abs=1e-10)
    assert float(ds.commonality.sel(part="A")) == pytest.approx(float(ds.r2.sel(subset="A")))


def test_rank_option_and_netcdf_round_trip(toy, tmp_path):
    brain, models = toy
    ds = variance_partitioning(brain, models, rank=True)
    y = scipy.stats.rankdata(brain.get_vectors().mean(0))
    x = np.array([scipy.stats.rankdata(v) for v in models.get_vectors()]).T
    assert float(ds.total_r2) == pytest.approx(LinearRegression().fit(x, y).score(x, y), rel=1e-9)
    ds.to_netcdf(tmp_path / "vp.nc")
    with xr.open_dataset(tmp_path / "vp.nc") as back:
        xr.testing.assert_identical(back.load(), ds)


def test_commonality_identity_for_random_r2_tables():
    # the sum of all parts is R²(all) for any table of R² values (inclusion-exclusion)
    rng = np.random.default_rng(2)
    for k in (1, 2, 4):
        names = [f"m{i}" for i in range(k)]
        table = {
            frozenset(s): rng.uniform()
            for size in range(1, k + 1)
            for s in combinations(names, size)
        }
        parts = commonality(table, names)
        assert len(parts) == 2**k - 1
        assert sum(parts.values()) == pytest.approx(table[frozenset(names)], abs=1e-12)


def test_models_are_matched_by_stimulus_id(toy):
    brain, models = toy
    perm = np.random.default_rng(3).permutation(N)
    shuffled = models.copy()
    shuffled.reorder(perm)
    xr.testing.assert_allclose(
        variance_partitioning(brain, shuffled), variance_partitioning(brain, models)
    )


def test_errors(toy):
    brain, models = toy
    with pytest.raises(ValueError, match="descriptor must be one of.*got 'modle'"):
        variance_partitioning(brain, models, descriptor="modle")
    with pytest.raises(ValueError, match="1 to 6 models; got 7"):
        variance_partitioning(brain, rdms(np.random.default_rng(0).normal(size=(7, N_PAIRS))))
    with pytest.raises(ValueError, match="'A' holds 3 RDMs"):
        variance_partitioning(brain, {"A": models})
    with pytest.raises(ValueError, match="constant"):
        variance_partitioning(rdms(np.ones(N_PAIRS)), models)


def test_kriegeskorte_human_it_real_data(shared_data):
    if not (shared_data / "kriegeskorte92" / "92_modelRDMs.mat").exists():
        pytest.skip("Kriegeskorte 92 model RDMs missing")
    from neuroalign.analysis.rsa import pool_subjects
    from neuroalign.data.brain import load_kriegeskorte_hit, load_kriegeskorte_models

    brain = pool_subjects(load_kriegeskorte_hit(), "subject").rdms  # 4 subjects
    models = load_kriegeskorte_models()
    chosen = models.subset("model", ["animacy", "monkeyIT", "V1"])
    ds = variance_partitioning(brain, chosen)
    y = brain.get_vectors().mean(0)
    x = chosen.get_vectors().T
    assert float(ds.total_r2) == pytest.approx(LinearRegression().fit(x, y).score(x, y), rel=1e-9)
    assert ds.commonality.sum().item() == pytest.approx(float(ds.total_r2), abs=1e-12)
    # human IT: monkey IT and animacy overlap; the V1 model explains little on its own
    assert float(ds.r2.sel(subset="monkeyIT")) > float(ds.r2.sel(subset="V1"))
    assert float(ds.commonality.sel(part="animacy&monkeyIT")) > 0
