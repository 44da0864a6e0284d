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
