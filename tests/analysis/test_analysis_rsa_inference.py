import numpy as np
import pytest
import rsatoolbox
import scipy.stats
import xarray as xr
from scipy.spatial.distance import pdist

from neuroalign.analysis.rdms import calc_rdm, calc_rdms
from neuroalign.analysis.rsa import bootstrap_samples, compare, layerwise_rsa
from neuroalign.analysis.rsa_inference import (
    _bootstrap_p,
    bootstrap_rsa,
    difference_test,
    rsa_matrix,
)

N = 20
IDS = np.array([f"stim{i:02d}" for i in range(N)])


def latent(d=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, 5)) @ rng.normal(size=(5, d))


def brain(n_subjects=6, noise=1.5, seed=1):
    rng = np.random.default_rng(seed)
    x = latent()
    return rsatoolbox.rdm.RDMs(
        np.array(
            [pdist(x + noise * rng.normal(size=x.shape), "correlation") for _ in range(n_subjects)]
        ),
        dissimilarity_measure="correlation",
        descriptors={"name": "synthetic IT"},
        rdm_descriptors={"subject": [f"sub{s}" for s in range(n_subjects)]},
        pattern_descriptors={"stimulus_id": list(IDS)},
    )


@pytest.fixture(scope="module")
def layers():
    rng = np.random.default_rng(2)
    x = latent()
    return {
        "good": x @ rng.normal(size=(40, 60)) + 0.5 * rng.normal(size=(N, 60)),
        "mid": x @ rng.normal(size=(40, 60)) + 3.0 * rng.normal(size=(N, 60)),
        "noise": rng.normal(size=(N, 60)),
    }


@pytest.fixture(scope="module")
def model_rdms(layers):
    return calc_rdms(layers, IDS)


def test_calc_rdms_concatenates_layers(layers, model_rdms):
    assert model_rdms.n_rdm == 3 and list(model_rdms.rdm_descriptors["layer"]) == list(layers)
    for i, x in enumerate(layers.values()):
        np.testing.assert_allclose(model_rdms.get_vectors()[i], calc_rdm(x, IDS).get_vectors()[0])
    assert list(model_rdms.pattern_descriptors["stimulus_id"]) == list(IDS)
    with pytest.raises(ValueError, match="layer 'bad'"):
        calc_rdms({"bad": np.ones((N, 3))}, IDS)


def test_subject_bootstrap_by_hand(model_rdms):
    brains = brain()
    samples = bootstrap_samples(model_rdms, brains, resample="subjects", n_boot=50, seed=3)
    per_subject = compare(model_rdms, brains, "spearman")  # (model, subject)
    rng = np.random.default_rng(3)
    expected = np.array([per_subject[:, rng.integers(0, 6, size=6)].mean(1) for _ in range(50)])
    np.testing.assert_allclose(samples, expected, atol=1e-12)


@pytest.mark.parametrize("resample", ["stimuli", "both"])
def test_stimulus_bootstrap_matches_rsatoolbox_subsampling(model_rdms, resample):
    brains = brain()
    samples = bootstrap_samples(model_rdms, brains, "corr", resample=resample, n_boot=4, seed=5)
    rng = np.random.default_rng(5)
    for b in range(4):
        idx = rng.integers(0, N, size=N)
        who = rng.integers(0, 6, size=6) if resample == "both" else np.arange(6)
        sims = compare(
            model_rdms.subsample_pattern("index", idx),
            brains.subsample_pattern("index", idx),
            "corr",
        )
        np.testing.assert_allclose(samples[b], sims[:, who].mean(1), atol=1e-12)


def test_bootstrap_rsa_agrees_with_layerwise_rsa(layers, model_rdms):
    brains = brain()
    ds = bootstrap_rsa(model_rdms, brains, resample="stimuli", n_boot=100, seed=7)
    ref = layerwise_rsa(layers, IDS, brains, n_boot=100, seed=7)
    assert ds.sizes == {"layer": 3, "subject": 6, "bootstrap": 100}
    for var in ("similarity", "mean", "sem", "ci_lo", "ci_hi", "noise_ceiling_lower"):
        np.testing.assert_allclose(ds[var].values, ref[var].values, atol=1e-12, err_msg=var)
    assert ds["mean"].sel(layer="good") > ds["mean"].sel(layer="noise") + 0.3
    for resample in ("subjects", "both"):
        ours = bootstrap_rsa(model_rdms, brains, resample=resample, n_boot=50, seed=2)
        ref = layerwise_rsa(layers, IDS, brains, n_boot=50, seed=2, resample=resample)
        np.testing.assert_allclose(ours.ci_lo.values, ref.ci_lo.values, atol=1e-12)
        np.testing.assert_allclose(ours.ci_hi.values, ref.ci_hi.values, atol=1e-12)
        assert ref.attrs["resample"] == resample


def test_bootstrap_intervals_by_factor(model_rdms, tmp_path):
    brains = brain()
    widths = {}
    for resample in ("stimuli", "subjects", "both"):
        ds = bootstrap_rsa(model_rdms, brains, resample=resample, n_boot=200, seed=1, ci=0.9)
        lo, hi = np.percentile(ds.samples.values, [5, 95], axis=0)
        np.testing.assert_allclose(ds.ci_lo.values, lo)
        np.testing.assert_allclose(ds.ci_hi.values, hi)
        widths[resample] = float((ds.ci_hi - ds.ci_lo).sel(layer="mid"))
        assert ds.attrs["resample"] == resample
    # two sources of variability: wider than either alone
    assert widths["both"] > max(widths["stimuli"], widths["subjects"])
    ds.to_netcdf(tmp_path / "boot.nc")
    with xr.open_dataset(tmp_path / "boot.nc") as back:
        xr.testing.assert_identical(back.load(), ds)


def test_paired_bootstrap_difference(model_rdms):
    brains = brain()
    ds = difference_test(model_rdms, brains, n_boot=300, seed=2)
    assert ds.difference.dims == ("layer_a", "layer_b")
    mean = compare(model_rdms, brains, "spearman").mean(1)
    np.testing.assert_allclose(ds.difference.values, mean[:, None] - mean[None, :], atol=1e-12)
    np.testing.assert_allclose(ds.p_value.values, ds.p_value.values.T)  # two-sided
    assert np.all(np.diag(ds.p_value) == 1)
    # the CI and p-value come from the paired samples (the same resamples for both layers)
    samples = bootstrap_samples(model_rdms, brains, n_boot=300, seed=2)
    d = samples[:, 0] - samples[:, 2]
    assert float(ds.ci_lo.sel(layer_a="good", layer_b="noise")) == pytest.approx(
        np.percentile(d, 2.5)
    )
    # good vs noise: every resample favours good, so p is at its floor 2 / (n_boot + 1)
    assert float(ds.p_value.sel(layer_a="good", layer_b="noise")) == pytest.approx(2 / 301)
    assert float(ds.ci_lo.sel(layer_a="good", layer_b="noise")) > 0


@pytest.mark.parametrize("mu", [0.0, 1.0, 1.5, 2.5])
def test_bootstrap_p_value_of_a_known_distribution(mu):
    # differences ~ N(mu, 1): a two-sided test of 0 has p = 2 * Phi(-|mu|)
    d = np.random.default_rng(0).normal(mu, 1.0, size=40_000)
    expected = 2 * scipy.stats.norm.cdf(-abs(mu))
    assert _bootstrap_p(d) == pytest.approx(expected, abs=0.01)
    assert _bootstrap_p(-d) == pytest.approx(expected, abs=0.01)  # two-sided
    assert _bootstrap_p(np.r_[d, np.nan]) == _bootstrap_p(d)  # undefined resamples dropped


def test_bootstrap_difference_of_equivalent_models_is_not_significant():
    # two models that are noisy copies of the same representation
    rng = np.random.default_rng(4)
    x = latent()
    a = calc_rdm(x + 2.0 * rng.normal(size=x.shape), IDS, descriptors={"model": "A"})
    b = calc_rdm(x + 2.0 * rng.normal(size=x.shape), IDS, descriptors={"model": "B"})
    ds = difference_test(rsatoolbox.rdm.concat([a, b]), brain(), n_boot=300, seed=0)
    assert ds.difference.dims == ("model_a", "model_b")
    assert float(ds.p_value.sel(model_a="A", model_b="B")) > 0.05
    assert float(ds.ci_lo[0, 1]) < 0 < float(ds.ci_hi[0, 1])


def test_paired_ttest_over_subjects(model_rdms):
    brains = brain()
    ds = difference_test(model_rdms, brains, "corr", test="ttest", ci=0.9)
    per_subject = compare(model_rdms, brains, "corr")
    expected = scipy.stats.ttest_rel(per_subject[1], per_subject[2])
    assert float(ds.t[1, 2]) == pytest.approx(expected.statistic)
    assert float(ds.p_value[1, 2]) == pytest.approx(expected.pvalue)
    diff = per_subject[1] - per_subject[2]
    lo, hi = scipy.stats.t.interval(0.9, 5, loc=diff.mean(), scale=scipy.stats.sem(diff))
    assert (float(ds.ci_lo[1, 2]), float(ds.ci_hi[1, 2])) == pytest.approx((lo, hi))
    assert ds.attrs["test"] == "ttest" and ds.attrs["n_subjects"] == 6


def test_rsa_matrix_across_layers_and_seeds(layers):
    seeds = [calc_rdms(layers, IDS, descriptors={"seed": s}) for s in (0, 1)]
    da = rsa_matrix(seeds[0], compare_method="spearman")
    assert da.dims == ("layer_a", "layer_b") and da.shape == (3, 3)
    np.testing.assert_allclose(np.diag(da), 1.0)
    np.testing.assert_allclose(da.values, compare(seeds[0], seeds[0], "spearman"))
    # the second set in another stimulus order is matched by id
    perm = np.random.default_rng(0).permutation(N)
    shuffled = calc_rdms(
        {k: v[perm] for k, v in layers.items()}, IDS[perm], descriptors={"seed": 1}
    )
    cross = rsa_matrix(seeds[0], shuffled, "corr")
    np.testing.assert_allclose(cross.values, compare(seeds[0], seeds[1], "corr"), atol=1e-12)
    assert list(cross.seed_b.values) == [1, 1, 1]
    both = rsatoolbox.rdm.concat(seeds)
    labelled = rsa_matrix(both, descriptor=["seed", "layer"])
    assert labelled.layer_a.values[3] == "1/good"
    with pytest.raises(ValueError, match="repeat.*give a descriptor"):
        rsa_matrix(both)


def test_errors(model_rdms):
    brains = brain()
    with pytest.raises(ValueError, match="resample must be one of.*got 'stimulus'"):
        bootstrap_rsa(model_rdms, brains, resample="stimulus")
    with pytest.raises(ValueError, match="test must be one of.*got 'wilcoxon'"):
        difference_test(model_rdms, brains, test="wilcoxon")
    with pytest.raises(ValueError, match="at least 3 subjects"):
        difference_test(model_rdms, brain(n_subjects=2), test="ttest")
    with pytest.raises(ValueError, match="needs at least 2 subjects"):
        bootstrap_rsa(model_rdms, brain(n_subjects=1), resample="subjects")
    with pytest.raises(ValueError, match="subject_descriptor.*got 'subj'"):
        bootstrap_rsa(model_rdms, brains, subject_descriptor="subj")
