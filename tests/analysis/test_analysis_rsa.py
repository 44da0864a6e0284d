import numpy as np
import pytest
import rsatoolbox
import scipy.stats
import torch
import xarray as xr
from scipy.spatial.distance import pdist

from neuroalign.analysis.rdms import calc_rdm, calc_rdms, match_stimuli, resampled_vectors
from neuroalign.analysis.rsa import (
    COMPARE_METHODS,
    bootstrap_samples,
    compare,
    layerwise_rsa,
    noise_ceiling,
    pool_subjects,
)

N = 24
IDS = np.array([f"stim{i:02d}" for i in range(N)])


def activations(n=N, d=300, offset=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)) @ rng.normal(size=(6, d)) + rng.normal(size=(n, d)) + offset


def brain(n_subjects=5, noise=1.0, seed=1, sessions=1):
    """Synthetic subject RDMs sharing one latent structure, with id descriptors."""
    rng = np.random.default_rng(seed)
    latent = activations(d=40, seed=0)
    vectors, subject, session = [], [], []
    for s in range(n_subjects):
        for k in range(sessions):
            x = latent + noise * rng.normal(size=latent.shape)
            vectors.append(pdist(x, "correlation"))
            subject.append(f"sub{s}")
            session.append(k)
    return rsatoolbox.rdm.RDMs(
        np.array(vectors),
        dissimilarity_measure="correlation",
        descriptors={"name": "synthetic IT"},
        rdm_descriptors={"subject": subject, "session": session},
        pattern_descriptors={"stimulus_id": list(IDS)},
    )


@pytest.mark.parametrize("method", ["correlation", "euclidean"])
@pytest.mark.parametrize("offset", [0.0, 50.0])
def test_calc_rdm_matches_rsatoolbox(method, offset):
    x = activations(offset=offset)
    expected = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method=method)
    ours = calc_rdm(x, IDS, method)
    np.testing.assert_allclose(ours.get_vectors(), expected.get_vectors(), rtol=1e-10, atol=1e-10)
    assert ours.dissimilarity_measure == expected.dissimilarity_measure


def test_calc_rdm_cosine_matches_scipy():
    x = activations(offset=1.0)
    np.testing.assert_allclose(
        calc_rdm(x, IDS, "cosine").get_vectors()[0], pdist(x, "cosine"), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("method", ["correlation", "cosine", "euclidean"])
def test_chunked_streamed_and_torch_inputs_agree(method):
    x = activations(offset=2.0)
    whole = calc_rdm(x, IDS, method, chunk_size=10_000).get_vectors()
    chunked = calc_rdm(x, IDS, method, chunk_size=7).get_vectors()
    streamed = calc_rdm((x[:, s : s + 64] for s in range(0, 300, 64)), IDS, method).get_vectors()
    tensor = calc_rdm(
        torch.from_numpy(x).reshape(N, 3, 10, 10), IDS, method, chunk_size=33
    ).get_vectors()
    xarr = calc_rdm(
        xr.DataArray(x, dims=("presentation", "neuroid")), IDS, method, chunk_size=50
    ).get_vectors()
    for other in (chunked, streamed, tensor, xarr):
        np.testing.assert_allclose(other, whole, rtol=1e-12, atol=1e-13)


def test_calc_rdm_descriptors():
    rdm = calc_rdm(
        activations(), IDS, "correlation", descriptors={"layer": "block3", "model": "mae"}
    )
    assert rdm.n_rdm == 1 and rdm.n_cond == N
    assert list(rdm.pattern_descriptors["stimulus_id"]) == list(IDS)
    assert rdm.rdm_descriptors["layer"] == ["block3"] and rdm.rdm_descriptors["model"] == ["mae"]


def test_calc_rdm_errors():
    x = activations()
    with pytest.raises(ValueError, match="'correlation', 'cosine', 'euclidean'.*'pearson'"):
        calc_rdm(x, IDS, "pearson")
    with pytest.raises(ValueError, match="duplicated ids.*stim01"):
        calc_rdm(x, np.where(IDS == "stim02", "stim01", IDS))
    with pytest.raises(ValueError, match="23 ids"):
        calc_rdm(x, IDS[:-1])
    flat = x.copy()
    flat[5] = 3.0
    with pytest.raises(ValueError, match="stim05.*constant"):
        calc_rdm(flat, IDS, "correlation")
    calc_rdm(flat, IDS, "euclidean")  # a constant pattern has well-defined distances
    bad = x.copy()
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match="NaN.*stim07"):
        calc_rdm(bad, IDS)
    with pytest.raises(ValueError, match="chunk 1 has 23"):
        calc_rdm([x[:, :10], x[:-1, 10:]], IDS)


def test_compare_spearman_equals_scipy():
    model = calc_rdm(activations(seed=3), IDS)
    brains = brain()
    sims = compare(model, brains, "spearman")
    assert sims.shape == (1, brains.n_rdm)
    for i, vec in enumerate(brains.get_vectors()):
        rho = scipy.stats.spearmanr(model.get_vectors()[0], vec).statistic
        assert sims[0, i] == pytest.approx(rho, abs=1e-12)


def test_compare_method_check_lists_valid_ones():
    with pytest.raises(ValueError, match="spearman.*corr_cov.*got 'pearson'"):
        compare(calc_rdm(activations(), IDS), brain(), "pearson")
    assert {"spearman", "tau-a", "rho-a", "corr", "cosine", "corr_cov"} <= set(COMPARE_METHODS)


def _pearson(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _ranks(v):
    """Plain ranks (1-based, ties averaged) by counting."""
    return np.array([1 + np.sum(v < x) + 0.5 * (np.sum(v == x) - 1) for x in v])


# How rsatoolbox pools RDMs for each comparison, and the comparison itself, written plainly.
_POOL = {
    "spearman": lambda vs: np.mean([_ranks(v) for v in vs], axis=0),
    "corr": lambda vs: np.mean([(v - v.mean()) / v.std() for v in vs], axis=0),
    "cosine": lambda vs: np.mean([v / np.sqrt(np.mean(v**2)) for v in vs], axis=0),
}
_SIM = {
    "spearman": lambda a, b: _pearson(_ranks(a), _ranks(b)),
    "corr": _pearson,
    "cosine": lambda a, b: float(a @ b / np.sqrt((a @ a) * (b @ b))),
}


def _plain_noise_ceiling(vectors, subject, method):
    """Lower: each subject's RDMs vs the pooled RDMs of all other subjects (leave one out);
    upper: vs the pooled RDMs of all subjects; a subject's similarities averaged."""
    subject = np.asarray(subject)
    lower, upper = [], []
    for s in np.unique(subject):
        own, others = vectors[subject == s], vectors[subject != s]
        lower.append(np.mean([_SIM[method](_POOL[method](others), v) for v in own]))
        upper.append(np.mean([_SIM[method](_POOL[method](vectors), v) for v in own]))
    return float(np.mean(lower)), float(np.mean(upper))


@pytest.mark.parametrize("method", ["spearman", "corr", "cosine"])
def test_noise_ceiling_equals_a_plain_implementation(method):
    brains = brain()
    expected = _plain_noise_ceiling(brains.get_vectors(), range(5), method)
    assert noise_ceiling(brains, method) == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("method", ["spearman", "corr"])
def test_noise_ceiling_pools_sessions_both_ways(method):
    brains = brain(n_subjects=4, sessions=3)
    vectors, subject = brains.get_vectors(), np.repeat(["sub0", "sub1", "sub2", "sub3"], 3)
    averaged = np.array([vectors[subject == s].mean(axis=0) for s in np.unique(subject)])
    by_rdms = _plain_noise_ceiling(averaged, range(4), method)
    by_similarities = _plain_noise_ceiling(vectors, subject, method)
    got_rdms = noise_ceiling(brains, method, "subject")  # pool_sessions="rdms" by default
    got_sims = noise_ceiling(brains, method, "subject", pool_sessions="similarities")
    assert got_rdms == pytest.approx(by_rdms, abs=1e-10)
    assert got_sims == pytest.approx(by_similarities, abs=1e-10)
    assert got_rdms[1] > got_sims[1]  # averaged sessions are less noisy


def _tau_a(x, y):
    n, total = len(x), 0.0
    for i in range(n):
        for j in range(i + 1, n):
            total += np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
    return total / (n * (n - 1) / 2)


def _rho_a(x, y):
    rx, ry = _ranks(x), _ranks(y)
    n = len(x)
    return sum((rx[i] - rx.mean()) * (ry[i] - ry.mean()) for i in range(n)) * 12 / (n**3 - n)


def test_tau_a_and_rho_a_equal_plain_double_loops():
    brains = brain(n_subjects=2)
    continuous = calc_rdm(activations(seed=3), IDS)
    category = np.repeat([0, 1, 2], N // 3)  # a categorical model RDM: many ties
    tied = rsatoolbox.rdm.RDMs(
        pdist(category[:, None], lambda a, b: float(a[0] != b[0]))[None, :],
        pattern_descriptors={"stimulus_id": list(IDS)},
    )
    for model in (continuous, tied):
        m = model.get_vectors()[0]
        tau = compare(model, brains, "tau-a")[0]
        rho = compare(model, brains, "rho-a")[0]
        for k, v in enumerate(brains.get_vectors()):
            assert tau[k] == pytest.approx(_tau_a(m, v), abs=1e-12)
            assert rho[k] == pytest.approx(_rho_a(m, v), abs=1e-12)
    # with ties tau-a is smaller in size than tau-b (which corrects for them)
    assert abs(compare(tied, brains, "tau-a")[0, 0]) < abs(compare(tied, brains, "tau-b")[0, 0])


def test_noise_ceiling_spearman_by_hand():
    # lower: each subject vs the mean rank-RDM of the others; upper: vs the mean of all.
    vectors = brain().get_vectors()
    ranks = np.array([scipy.stats.rankdata(v) for v in vectors])
    lower = np.mean(
        [
            scipy.stats.spearmanr(vectors[i], np.delete(ranks, i, 0).mean(0)).statistic
            for i in range(5)
        ]
    )
    upper = np.mean([scipy.stats.spearmanr(vectors[i], ranks.mean(0)).statistic for i in range(5)])
    got = noise_ceiling(brain(), "spearman")
    assert got == pytest.approx((lower, upper), abs=1e-12)
    assert got[0] < got[1]


def test_noise_ceiling_needs_two_subjects():
    with pytest.raises(ValueError, match="at least 2 subjects"):
        noise_ceiling(brain(n_subjects=1))
    with pytest.raises(ValueError, match="'subject'.*got 'subj'"):
        noise_ceiling(brain(), subject_descriptor="subj")


def test_match_stimuli_matches_by_id():
    x = activations(seed=4)
    perm = np.random.default_rng(0).permutation(N)
    shuffled = calc_rdm(x[perm], IDS[perm])
    reordered = match_stimuli(shuffled, brain().pattern_descriptors["stimulus_id"])
    in_order = calc_rdm(x, IDS)
    np.testing.assert_allclose(reordered.get_vectors(), in_order.get_vectors(), rtol=1e-12)
    assert list(reordered.pattern_descriptors["stimulus_id"]) == list(IDS)
    assert list(reordered.pattern_descriptors["index"]) == list(range(N))
    # the input is not modified
    assert list(shuffled.pattern_descriptors["stimulus_id"]) == list(IDS[perm])


def test_match_stimuli_lists_the_ids_that_differ():
    ids = IDS.copy()
    ids[3], ids[10] = "cat", "dog"
    model = calc_rdm(activations(), ids)
    brain_ids = brain().pattern_descriptors["stimulus_id"]
    with pytest.raises(
        ValueError,
        match=r"2 requested ids missing from RDMs \['stim03', 'stim10'\], 2 ids of RDMs not "
        r"requested \['cat', 'dog'\]",
    ):
        match_stimuli(model, brain_ids)
    with pytest.raises(ValueError, match="requested stimulus ids holds duplicated ids.*stim00"):
        match_stimuli(calc_rdm(activations(), IDS), ["stim00", *IDS[:-1]])
    unnamed = rsatoolbox.rdm.RDMs(model.get_vectors())
    with pytest.raises(ValueError, match="model have no 'stimulus_id'"):
        match_stimuli(unnamed, brain_ids, name="model")


def test_resampled_vectors_match_rsatoolbox_subsample_pattern():
    brains = brain()
    model = calc_rdm(activations(seed=5), IDS)
    idx = np.random.default_rng(3).integers(0, N, size=N)
    ours = compare(
        resampled_vectors(model.get_matrices(), idx),
        resampled_vectors(brains.get_matrices(), idx),
        "spearman",
    )
    theirs = compare(
        model.subsample_pattern("index", idx), brains.subsample_pattern("index", idx), "spearman"
    )
    np.testing.assert_allclose(ours, theirs, atol=1e-12)
    assert np.isnan(resampled_vectors(model.get_matrices(), idx)).any()  # repeats were drawn


def test_layerwise_rsa_values():
    brains = brain()
    layers = {
        "noise": np.random.default_rng(9).normal(size=(N, 50)),
        "mid": activations(seed=0),
        "top": activations(d=40, seed=0),
    }
    perm = np.random.default_rng(1).permutation(N)
    ds = layerwise_rsa(
        {k: v[perm] for k, v in layers.items()}, IDS[perm], brains, subject_descriptor="subject"
    )
    assert ds.sizes == {"layer": 3, "subject": 5}
    assert list(ds.layer.values) == ["noise", "mid", "top"]
    for name, x in layers.items():
        expected = compare(calc_rdm(x, IDS), brains, "spearman")[0]
        np.testing.assert_allclose(ds["similarity"].sel(layer=name).values, expected, atol=1e-12)
        assert float(ds["mean"].sel(layer=name)) == pytest.approx(expected.mean(), abs=1e-12)
        assert float(ds["sem"].sel(layer=name)) == pytest.approx(
            scipy.stats.sem(expected), abs=1e-12
        )
    assert float(ds["mean"].sel(layer="top")) > float(ds["mean"].sel(layer="noise")) + 0.2
    nc = noise_ceiling(brains, "spearman", "subject")
    assert (float(ds.noise_ceiling_lower), float(ds.noise_ceiling_upper)) == pytest.approx(nc)
    assert ds.attrs["compare_method"] == "spearman" and ds.attrs["brain"] == "synthetic IT"


@pytest.mark.parametrize("method", ["corr", "spearman"])
def test_layerwise_rsa_pools_sessions_both_ways(method):
    brains = brain(n_subjects=3, sessions=2)
    x = activations(seed=2)
    model = calc_rdm(x, IDS).get_vectors()[0]
    sim = _SIM[method]
    vectors = brains.get_vectors()  # subject-major: sub0 s0, sub0 s1, sub1 s0, ...
    by_rdms = [sim(model, vectors[2 * s : 2 * s + 2].mean(axis=0)) for s in range(3)]
    by_sims = [np.mean([sim(model, v) for v in vectors[2 * s : 2 * s + 2]]) for s in range(3)]
    ds = layerwise_rsa({"l": x}, IDS, brains, subject_descriptor="subject", compare_method=method)
    np.testing.assert_allclose(ds["similarity"].values[0], by_rdms, atol=1e-10)
    assert ds.attrs["pool_sessions"] == "rdms"
    assert list(ds.subject.values) == ["sub0", "sub1", "sub2"]
    sims = layerwise_rsa({"l": x}, IDS, brains, subject_descriptor="subject",
                         compare_method=method, pool_sessions="similarities")
    np.testing.assert_allclose(sims["similarity"].values[0], by_sims, atol=1e-10)
    assert not np.allclose(by_rdms, by_sims)
    each = layerwise_rsa({"l": x}, IDS, brains, compare_method=method)
    assert each.sizes["subject"] == 6
    with pytest.raises(ValueError, match="pool_sessions.*got 'sessions'"):
        layerwise_rsa({"l": x}, IDS, brains, pool_sessions="sessions")


def test_subjects_with_integer_labels_are_ordered_numerically():
    brains = brain(n_subjects=12)
    labels = [10, 2, 1, 11, 3, 12, 4, 5, 6, 7, 8, 9]
    brains.rdm_descriptors["subject"] = labels
    x = activations(seed=6)
    ds = layerwise_rsa({"l": x}, IDS, brains, subject_descriptor="subject", compare_method="corr")
    assert list(ds.subject.values) == list(range(1, 13))
    per_rdm = compare(calc_rdm(x, IDS), brains, "corr")[0]
    np.testing.assert_allclose(ds["similarity"].values[0], per_rdm[np.argsort(labels)], atol=1e-12)
    # the same order from the inference functions (one engine)
    from neuroalign.analysis.rsa_inference import bootstrap_rsa

    boot = bootstrap_rsa(calc_rdms({"l": x}, IDS), brains, "corr", subject_descriptor="subject",
                         n_boot=2)
    np.testing.assert_array_equal(boot.subject.values, ds.subject.values)
    np.testing.assert_allclose(boot["similarity"].values, ds["similarity"].values, atol=1e-12)
    strings = pool_subjects(brains.subset("subject", [1, 2, 10]), "subject")
    assert list(strings.labels) == [1, 2, 10]


def test_bootstrap_drops_undefined_resamples_with_a_warning(monkeypatch):
    # rsatoolbox gives 0, not NaN, for constant vectors, so undefined similarities are rare (the
    # whitened and Riemannian methods): make every 4th resample undefined for one subject
    import neuroalign.analysis.rsa as rsa_module

    brains = brain(n_subjects=3)
    model = calc_rdms({"a": activations(seed=0), "b": activations(seed=7)}, IDS)
    clean = bootstrap_samples(model, brains, "corr", n_boot=200, seed=0)
    calls = []

    def compare_with_gaps(a, b, compare_method="spearman", sigma_k=None):
        sims = compare(a, b, compare_method, sigma_k)
        if isinstance(a, np.ndarray):  # a resample
            calls.append(1)
            if len(calls) % 4 == 1:
                sims[0, 1] = np.nan  # layer 'a', subject 1
        return sims

    monkeypatch.setattr(rsa_module, "compare", compare_with_gaps)
    with pytest.warns(RuntimeWarning, match="50 of 200 bootstrap resamples .*dropped"):
        samples = bootstrap_samples(model, brains, "corr", n_boot=200, seed=0)
    gaps = np.arange(200) % 4 == 0
    assert np.isnan(samples[gaps, 0]).all() and not np.isnan(samples[~gaps, 0]).any()
    np.testing.assert_allclose(samples[~gaps], clean[~gaps], atol=1e-12)
    np.testing.assert_allclose(samples[:, 1], clean[:, 1], atol=1e-12)  # layer 'b' untouched
    calls.clear()
    with pytest.warns(RuntimeWarning, match="dropped"):
        ds = layerwise_rsa(model, None, brains, compare_method="corr", n_boot=200, seed=0)
    defined = clean[~gaps, 0]
    assert float(ds.ci_lo[0]) == pytest.approx(np.percentile(defined, 2.5), abs=1e-12)
    assert float(ds.ci_hi[0]) == pytest.approx(np.percentile(defined, 97.5), abs=1e-12)
    assert float(ds.ci_lo[1]) == pytest.approx(np.percentile(clean[:, 1], 2.5), abs=1e-12)


def test_layerwise_rsa_with_ready_rdms_equals_with_activations():
    brains = brain(n_subjects=4, sessions=2)
    layers = {"a": activations(seed=0), "b": activations(seed=7), "c": activations(d=40)}
    kwargs = dict(subject_descriptor="subject", n_boot=30, seed=2, resample="both")
    from_activations = layerwise_rsa(layers, IDS, brains, rdm_method="euclidean", **kwargs)
    rdms = calc_rdms(layers, IDS, "euclidean")
    perm = np.random.default_rng(0).permutation(N)  # ready RDMs in another stimulus order
    shuffled = match_stimuli(rdms, IDS[perm])
    from_rdms = layerwise_rsa(shuffled, None, brains, **kwargs)
    xr.testing.assert_allclose(from_rdms, from_activations, atol=1e-12)
    assert from_rdms.attrs == from_activations.attrs
    with pytest.raises(ValueError, match="stimulus_id must be None"):
        layerwise_rsa(rdms, IDS, brains)
    with pytest.raises(ValueError, match="rdm descriptor 'layer'"):
        layerwise_rsa(rsatoolbox.rdm.RDMs(rdms.get_vectors(), pattern_descriptors={
            "stimulus_id": list(IDS)}), None, brains)


def test_layerwise_rsa_bootstrap_ci(tmp_path):
    brains = brain()
    layers = {"a": activations(seed=0), "b": activations(seed=7)}
    ds = layerwise_rsa(layers, IDS, brains, n_boot=200, seed=5)
    again = layerwise_rsa(layers, IDS, brains, n_boot=200, seed=5)
    xr.testing.assert_identical(ds, again)
    assert ((ds.ci_lo <= ds["mean"]) & (ds["mean"] <= ds.ci_hi)).all()
    assert (ds.ci_hi - ds.ci_lo > 0.01).all()
    ds.to_netcdf(tmp_path / "rsa.nc")
    with xr.open_dataset(tmp_path / "rsa.nc") as back:
        xr.testing.assert_identical(back.load(), ds)


def test_layerwise_rsa_errors_name_the_layer():
    brains = brain()
    ids = IDS.astype(object)
    ids[0] = "elephant"
    with pytest.raises(ValueError, match="stimulus ids differ.*elephant"):
        layerwise_rsa({"fc": activations()}, ids, brains)
    with pytest.raises(ValueError, match="compare_method.*got 'spearmann'"):
        layerwise_rsa({"fc": activations()}, IDS, brains, compare_method="spearmann")


def test_kriegeskorte_human_it_real_data(shared_data):
    scipy_io = pytest.importorskip("scipy.io")
    path = shared_data / "kriegeskorte92" / "92_brainRDMs.mat"
    images = sorted((shared_data / "cichy92" / "images").glob("image_*.jpg"))
    if not path.exists() or len(images) != 92:
        pytest.skip("Kriegeskorte 92 brain RDMs or Cichy images missing")
    from PIL import Image

    rdms = scipy_io.loadmat(path, squeeze_me=True, struct_as_record=False)["RDMs"]
    ids = [f"image_{i:02d}" for i in range(1, 93)]
    subjects = [r.name.split("|")[1].strip() for r in rdms.flat]
    brains = rsatoolbox.rdm.RDMs(
        np.array([r.RDM for r in rdms.flat]),
        rdm_descriptors={"subject": subjects},
        pattern_descriptors={"stimulus_id": ids},
        descriptors={"name": "human IT (Kriegeskorte 2008)"},
    )
    pixels = np.stack(
        [np.asarray(Image.open(p).convert("L").resize((32, 32)), dtype=np.float64) for p in images]
    )
    ds = layerwise_rsa(
        {"pixels": pixels}, ids, brains, subject_descriptor="subject", pool_sessions="similarities"
    )
    assert ds.sizes == {"layer": 1, "subject": 4}
    lower, upper = rsatoolbox.inference.boot_noise_ceiling(
        brains, method="spearman", rdm_descriptor="subject"
    )
    assert float(ds.noise_ceiling_lower) == pytest.approx(lower) and float(
        ds.noise_ceiling_upper
    ) == pytest.approx(upper)
    assert 0 < lower < upper < 1
    # pixels explain little of IT: well below the ceiling
    assert float(ds["mean"].squeeze()) < lower


def test_bootstrap_interval_shrinks_with_more_stimuli():
    """The same structure measured on 4x the stimuli gives a clearly narrower stimulus-bootstrap CI."""
    rng = np.random.default_rng(3)
    widths = {}
    for n in (24, 96):
        ids = np.array([f"s{i:03d}" for i in range(n)])
        latent = rng.normal(size=(n, 6)) @ rng.normal(size=(6, 40))
        subjects = [pdist(latent + 1.5 * rng.normal(size=latent.shape), "correlation") for _ in range(4)]
        brains = rsatoolbox.rdm.RDMs(
            np.array(subjects), dissimilarity_measure="correlation",
            rdm_descriptors={"subject": [f"sub{s}" for s in range(4)]},
            pattern_descriptors={"stimulus_id": list(ids)},
        )
        model = latent @ rng.normal(size=(40, 200)) + 2.0 * rng.normal(size=(n, 200))
        ds = layerwise_rsa({"layer": model}, ids, brains, n_boot=300, seed=0,
                           subject_descriptor="subject")
        assert float(ds.ci_lo[0]) <= float(ds["mean"][0]) <= float(ds.ci_hi[0])
        widths[n] = float(ds.ci_hi[0] - ds.ci_lo[0])
    assert widths[96] < 0.75 * widths[24]
