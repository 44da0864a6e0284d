import numpy as np
import pytest
import rsatoolbox
import scipy.stats
import torch
import xarray as xr
from scipy.spatial.distance import pdist

from neuroalign.analysis.rsa import (
    COMPARE_METHODS,
    _resampled_vectors,
    calc_rdm,
    check_and_reorder,
    compare,
    layerwise_rsa,
    noise_ceiling,
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


@pytest.mark.parametrize("method", ["spearman", "corr", "cosine", "rho-a"])
def test_noise_ceiling_equals_rsatoolbox(method):
    brains = brain()
    expected = rsatoolbox.inference.boot_noise_ceiling(brains, method=method)
    assert noise_ceiling(brains, method) == pytest.approx(expected, abs=1e-12)


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
        noise_ceiling(brain(), rdm_descriptor="subj")


def test_check_and_reorder_matches_by_id():
    x = activations(seed=4)
    perm = np.random.default_rng(0).permutation(N)
    shuffled = calc_rdm(x[perm], IDS[perm])
    reordered = check_and_reorder(shuffled, brain())
    in_order = calc_rdm(x, IDS)
    np.testing.assert_allclose(reordered.get_vectors(), in_order.get_vectors(), rtol=1e-12)
    assert list(reordered.pattern_descriptors["stimulus_id"]) == list(IDS)
    assert list(reordered.pattern_descriptors["index"]) == list(range(N))
    # the input is not modified
    assert list(shuffled.pattern_descriptors["stimulus_id"]) == list(IDS[perm])


def test_check_and_reorder_lists_the_ids_that_differ():
    ids = IDS.copy()
    ids[3], ids[10] = "cat", "dog"
    model = calc_rdm(activations(), ids)
    with pytest.raises(
        ValueError,
        match=r"2 only in the model RDMs \['cat', 'dog'\].*2 only in the brain RDMs \['stim03', 'stim10'\]",
    ):
        check_and_reorder(model, brain())
    unnamed = rsatoolbox.rdm.RDMs(model.get_vectors())
    with pytest.raises(ValueError, match="model_rdms has no 'stimulus_id'"):
        check_and_reorder(unnamed, brain())


def test_resampled_vectors_match_rsatoolbox_subsample_pattern():
    brains = brain()
    model = calc_rdm(activations(seed=5), IDS)
    idx = np.random.default_rng(3).integers(0, N, size=N)
    ours = compare(
        _resampled_vectors(model.get_matrices(), idx),
        _resampled_vectors(brains.get_matrices(), idx),
        "spearman",
    )
    theirs = compare(
        model.subsample_pattern("index", idx), brains.subsample_pattern("index", idx), "spearman"
    )
    np.testing.assert_allclose(ours, theirs, atol=1e-12)
    assert np.isnan(_resampled_vectors(model.get_matrices(), idx)).any()  # repeats were drawn


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


def test_layerwise_rsa_averages_sessions_of_a_subject():
    brains = brain(n_subjects=3, sessions=2)
    x = activations(seed=2)
    ds = layerwise_rsa({"l": x}, IDS, brains, subject_descriptor="subject", compare_method="corr")
    per_rdm = compare(calc_rdm(x, IDS), brains, "corr")[0]
    np.testing.assert_allclose(
        ds["similarity"].values[0], per_rdm.reshape(3, 2).mean(1), atol=1e-12
    )
    assert list(ds.subject.values) == ["sub0", "sub1", "sub2"]
    each = layerwise_rsa({"l": x}, IDS, brains, compare_method="corr")
    assert each.sizes["subject"] == 6


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
    with pytest.raises(ValueError, match="layer 'fc'.*elephant"):
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
    ds = layerwise_rsa({"pixels": pixels}, ids, brains, subject_descriptor="subject")
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
