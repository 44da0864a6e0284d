import numpy as np
import pytest
import rsatoolbox
import xarray as xr
from scipy.spatial.distance import pdist

from neuroalign.data.responses import load_responses, responses_to_rdms

N = 12
IDS = np.array([f"img{i:02d}" for i in range(N)])


def assembly(repetitions=1, subjects=False, seed=0):
    """Responses (presentation, neuroid): V1 has 15 neuroids, IT 25; stimuli repeated."""
    rng = np.random.default_rng(seed)
    regions = np.array(["V1"] * 15 + ["IT"] * 25)
    ids = np.tile(IDS, repetitions)
    values = rng.normal(size=(N * repetitions, regions.size)) + 2.0
    coords = {
        "stimulus_id": ("presentation", ids),
        "region": ("neuroid", regions),
        "repetition": ("presentation", np.repeat(np.arange(repetitions), N)),
    }
    if subjects:
        coords["subject"] = ("neuroid", np.array(["s1", "s2"] * 20))
    return xr.DataArray(values, dims=("presentation", "neuroid"), coords=coords, name="responses")


def test_one_rdm_per_region_matches_rsatoolbox(tmp_path):
    da = assembly()
    da.to_netcdf(tmp_path / "resp.nc")
    rdms = load_responses(tmp_path / "resp.nc")
    assert rdms.n_rdm == 2 and list(rdms.rdm_descriptors["roi"]) == ["V1", "IT"]
    assert list(rdms.rdm_descriptors["n_neuroids"]) == [15, 25]
    assert list(rdms.rdm_descriptors["dataset"]) == ["resp", "resp"]
    assert list(rdms.pattern_descriptors["stimulus_id"]) == list(IDS)
    for i, region in enumerate(["V1", "IT"]):
        x = da.values[:, da.region.values == region]
        expected = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method="correlation")
        np.testing.assert_allclose(rdms.get_vectors()[i], expected.get_vectors()[0], atol=1e-12)
    cosine = load_responses(tmp_path / "resp.nc", rdm_method="cosine")
    np.testing.assert_allclose(
        cosine.subset("roi", "IT").get_vectors()[0],
        pdist(da.values[:, 15:], "cosine"),
        atol=1e-12,
    )


def test_repetitions_are_averaged_and_order_kept(tmp_path):
    da = assembly(repetitions=3)
    perm = np.random.default_rng(1).permutation(da.sizes["presentation"])
    da = da.isel(presentation=perm)  # presentations in any order
    da.to_netcdf(tmp_path / "rep.nc")
    rdms = load_responses(tmp_path / "rep.nc", rdm_method="euclidean")
    first_seen = list(dict.fromkeys(da.stimulus_id.values.tolist()))
    assert list(rdms.pattern_descriptors["stimulus_id"]) == first_seen
    means = np.stack([da.values[da.stimulus_id.values == s].mean(0) for s in first_seen])
    it = means[:, da.region.values == "IT"]
    np.testing.assert_allclose(
        rdms.subset("roi", "IT").get_vectors()[0], pdist(it, "sqeuclidean") / 25, atol=1e-12
    )


def test_subject_coord_gives_one_rdm_per_subject_and_region(tmp_path):
    da = assembly(subjects=True).transpose("neuroid", "presentation")  # either dim order
    da.to_netcdf(tmp_path / "subj.nc")
    rdms = load_responses(tmp_path / "subj.nc")
    assert rdms.n_rdm == 4
    pairs = list(zip(rdms.rdm_descriptors["subject"], rdms.rdm_descriptors["roi"], strict=True))
    # in order of first appearance along neuroid (neuroid 15, the first IT one, is s2's)
    assert pairs == [("s1", "V1"), ("s2", "V1"), ("s2", "IT"), ("s1", "IT")]
    keep = (da.subject.values == "s2") & (da.region.values == "IT")
    np.testing.assert_allclose(
        rdms.get_vectors()[2], pdist(da.values[keep].T, "correlation"), atol=1e-12
    )


def test_errors_name_the_file_and_region(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nc"):
        load_responses(tmp_path / "nope.nc")
    da = assembly()
    da.drop_vars("region").to_netcdf(tmp_path / "noregion.nc")
    with pytest.raises(ValueError, match="noregion.nc.*coordinate 'region'"):
        load_responses(tmp_path / "noregion.nc")
    bad = da.copy()
    bad[3, 20] = np.nan
    bad.to_netcdf(tmp_path / "nan.nc")
    with pytest.raises(ValueError, match="nan.nc.*region 'IT'.*NaN.*img03"):
        load_responses(tmp_path / "nan.nc")
    xr.Dataset({"a": da, "b": da * 2}).to_netcdf(tmp_path / "two.nc")
    with pytest.raises(ValueError, match=r"\['a', 'b'\]"):
        load_responses(tmp_path / "two.nc")
    assert load_responses(tmp_path / "two.nc", variable="b").n_rdm == 2
    with pytest.raises(ValueError, match="'variable' parameter must be one of.*got 'c'"):
        load_responses(tmp_path / "two.nc", variable="c")
    with pytest.raises(ValueError, match="rdm_method must be one of.*got 'pearson'"):
        responses_to_rdms(da, "pearson")


def trials(n_stim=8, n_rep=4, n_neuroid=6, seed=0, noise=1.0):
    """An assembly (presentation, neuroid, repetition): patterns plus independent noise."""
    from neuroalign.data.assemblies import make_assembly

    rng = np.random.default_rng(seed)
    patterns = rng.normal(size=(n_stim, n_neuroid, 1))
    values = patterns + noise * rng.normal(size=(n_stim, n_neuroid, n_rep))
    return make_assembly(values, [f"s{i}" for i in range(n_stim)], region="V4", subject="m1")


def direct(da, method, keep=slice(None)):
    """rsatoolbox called directly on the Dataset of the assembly's present trials."""
    from rsatoolbox.data.noise import prec_from_unbalanced

    v = da.values[:, keep]
    p, r = np.nonzero(~np.isnan(v[:, 0, :]))
    ds = rsatoolbox.data.Dataset(v[p, :, r], obs_descriptors={
        "stimulus_id": da.stimulus_id.values[p], "repetition": r})
    noise = prec_from_unbalanced(ds, "stimulus_id") if method == "crossnobis" else None
    return ds, noise


@pytest.mark.parametrize("method", ["crossnobis", "cv-euclidean"])
def test_response_rdms_equal_rsatoolbox(method):
    from neuroalign.data.responses import response_rdms

    da = trials()
    rdms = response_rdms(da, method)
    ds, noise = direct(da, method)
    expected = rsatoolbox.rdm.calc_rdm(ds, method="crossnobis", descriptor="stimulus_id",
                                       noise=noise, cv_descriptor="repetition")
    assert rdms.dissimilarity_measure == "crossnobis"
    assert list(rdms.pattern_descriptors["stimulus_id"]) == list(
        expected.pattern_descriptors["stimulus_id"])
    np.testing.assert_allclose(rdms.get_vectors(), expected.get_vectors(), atol=1e-12)
    assert rdms.rdm_descriptors["roi"] == ["V4"] and rdms.rdm_descriptors["subject"] == ["m1"]
    # missing repeats (NaN padding) are dropped: rsatoolbox's unbalanced estimator on the
    # present trials only, and the same with the padding cut away
    values = da.values.copy()
    values[2, :, 3] = values[5, :, 2:] = np.nan
    holes = da.copy(data=values)
    rdms = response_rdms(holes, method)
    ds, noise = direct(holes, method)
    expected = rsatoolbox.rdm.calc_rdm_unbalanced(
        ds, method="crossnobis", descriptor="stimulus_id", noise=noise, cv_descriptor="repetition")
    np.testing.assert_allclose(rdms.get_vectors(), expected.get_vectors(), atol=1e-12)
    assert np.isfinite(rdms.get_vectors()).all()


def test_response_rdms_unbalanced_equals_balanced_on_balanced_data():
    da = trials(seed=3)
    ds, _ = direct(da, "cv-euclidean")
    kw = {"method": "crossnobis", "descriptor": "stimulus_id", "cv_descriptor": "repetition"}
    np.testing.assert_allclose(
        rsatoolbox.rdm.calc_rdm_unbalanced(ds, **kw).get_vectors(),
        rsatoolbox.rdm.calc_rdm(ds, **kw).get_vectors(), atol=1e-12)


def test_cross_validated_distance_is_unbiased():
    """Two stimuli with the same mean: the cross-validated distance is 0 in expectation, the
    euclidean distance of the repeat averages is positive (the noise's variance)."""
    from neuroalign.data.assemblies import make_assembly
    from neuroalign.data.responses import response_rdms

    rng = np.random.default_rng(0)
    cv, plain = [], []
    for _ in range(200):
        values = np.ones((2, 20, 4)) + rng.normal(size=(2, 20, 4))
        da = make_assembly(values, ["a", "b"], region="V4")
        cv.append(response_rdms(da, "cv-euclidean").get_vectors()[0, 0])
        plain.append(response_rdms(da, "euclidean").get_vectors()[0, 0])
    # the noise of a 4-repeat mean has variance 1/4 per neuroid: E[plain] = 2 · 1/4
    assert abs(np.mean(cv)) < 3 * np.std(cv) / np.sqrt(len(cv))
    assert np.mean(plain) == pytest.approx(0.5, rel=0.1)


def test_response_rdms_bad_input():
    from neuroalign.data.responses import response_rdms

    da = trials()
    with pytest.raises(ValueError, match="rdm_method must be one of"):
        response_rdms(da, "crossnobbis")
    with pytest.raises(ValueError, match="needs responses with a 'repetition'"):
        response_rdms(da.isel(repetition=0, drop=True), "crossnobis")
    values = da.values.copy()
    values[1, :, 1:] = np.nan
    with pytest.raises(ValueError, match="fewer than two repeats.*'s1'"):
        response_rdms(da.copy(data=values), "cv-euclidean")
    values = da.values.copy()
    values[1, 0, 2] = np.nan
    with pytest.raises(ValueError, match="repeat 2 of stimulus 's1' is missing for some"):
        response_rdms(da.copy(data=values), "cv-euclidean")
    # a method of RDM_METHODS: the RDMs of the repeat averages
    from neuroalign.data.assemblies import average_repetitions

    np.testing.assert_allclose(
        response_rdms(da, "correlation").get_vectors(),
        responses_to_rdms(average_repetitions(da)).get_vectors())


@pytest.mark.parametrize("method", ["crossnobis", "cv-euclidean"])
def test_responses_file_with_cv_method_as_brain(tmp_path, method):
    """``FILE:crossnobis`` / ``FILE:cv-euclidean``: the cross-validated RDMs of a responses file
    with repetitions, wherever brain RDMs are loaded by name (``--brain``)."""
    from neuroalign.data.assemblies import write_assembly
    from neuroalign.data.registry import load_brain_rdms
    from neuroalign.data.responses import response_rdms

    da = trials(seed=5)
    path = write_assembly(da, tmp_path / "trials.nc")
    rdms, subject = load_brain_rdms(f"{path}:{method}")
    np.testing.assert_allclose(rdms.get_vectors(), response_rdms(da, method).get_vectors(),
                               atol=1e-12)
    assert rdms.descriptors["rdm_method"] == method and subject == "subject"
    assert rdms.rdm_descriptors["dataset"] == ["trials"]
    # an unknown suffix is not a method: the whole string is taken as a path
    with pytest.raises(FileNotFoundError):
        load_brain_rdms(f"{path}:crossnobbis.nc")
    with pytest.raises(ValueError, match="needs responses with a 'repetition' dim"):
        load_brain_rdms(f"{write_assembly(da.isel(repetition=0, drop=True), tmp_path / 'one.nc')}"
                        f":{method}")
