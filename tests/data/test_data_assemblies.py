"""Response assemblies: building, reading every format, writing, and the Cowley V4 data."""

import h5py
import numpy as np
import pytest
import scipy.io

from neuroalign.data import (
    FILES,
    load_brain_rdms,
    load_brain_responses,
    load_stimulus_set,
    make_assembly,
    read_assembly,
    write_assembly,
)
from neuroalign.data.assemblies import average_repetitions, n_repetitions


def _trials(rng, n_stim=12, n_neuroid=5, n_rep=4):
    values = rng.poisson(3.0, (n_stim, n_neuroid, n_rep)).astype(float)
    values[0, :, 2:] = np.nan  # stimulus 0 has two repeats
    values[3, :, 3] = np.nan
    return values


def test_make_assembly_and_averages():
    rng = np.random.default_rng(0)
    values = _trials(rng)
    ids = [f"s{i}" for i in range(12)]
    da = make_assembly(values.transpose(1, 0, 2), ids, dims=("neuroid", "presentation", "repetition"),
                       region="V4", subject=["a", "a", "b", "b", "b"])
    assert da.dims == ("presentation", "neuroid", "repetition")
    np.testing.assert_array_equal(da.values, values)
    assert list(da["region"].values) == ["V4"] * 5
    assert n_repetitions(da)[0, 0] == 2 and n_repetitions(da)[3, 0] == 3
    np.testing.assert_allclose(average_repetitions(da).values, np.nanmean(values, axis=2))


def test_assembly_errors():
    rng = np.random.default_rng(0)
    values = _trials(rng)
    with pytest.raises(ValueError, match="stimulus ids repeat"):
        make_assembly(values, ["s"] * 12)
    values[5, 1] = np.nan
    with pytest.raises(ValueError, match="no response, e.g. stimulus 's5', neuroid 1"):
        make_assembly(values, [f"s{i}" for i in range(12)])
    with pytest.raises(ValueError, match="2-D"):
        make_assembly(np.zeros(3), ["a", "b", "c"])


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".mat", ".h5"])
def test_read_array_files(tmp_path, suffix):
    rng = np.random.default_rng(1)
    values = _trials(rng)
    ids = [f"s{i}" for i in range(12)]
    path = tmp_path / f"r{suffix}"
    if suffix == ".npy":
        np.save(path, values)
    elif suffix == ".npz":
        np.savez(path, responses=values)
    elif suffix == ".mat":
        scipy.io.savemat(path, {"responses": values})
    else:
        with h5py.File(path, "w") as f:
            f["group/responses"] = values
    id_file = tmp_path / "ids.txt"
    id_file.write_text("\n".join(ids) + "\n")
    da = read_assembly(path, id_file, region="IT")
    np.testing.assert_array_equal(da.values, values)
    assert list(da["stimulus_id"].values) == ids
    with pytest.raises(ValueError, match="needs its stimulus ids"):
        read_assembly(path)
    with pytest.raises(ValueError, match=r"r\.\w+: .*presentation"):
        read_assembly(path, ids[:5])


def test_write_and_read_netcdf(tmp_path):
    rng = np.random.default_rng(2)
    da = make_assembly(_trials(rng), [f"s{i}" for i in range(12)], region="V4", subject="m")
    out = write_assembly(da, tmp_path / "a.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nc"]
    back = read_assembly(out)
    np.testing.assert_array_equal(back.values, da.values)
    assert list(back["subject"].values) == ["m"] * 5
    # the existing RDM loader still reads a (presentation, neuroid) file
    from neuroalign.data import load_responses

    write_assembly(average_repetitions(da), tmp_path / "avg.nc")
    assert load_responses(tmp_path / "avg.nc").n_rdm == 1


def test_cowley_registered_with_download_urls():
    for rel in (
        "cowley_v4/responses_raw/responses_210325.npy",
        "cowley_v4/responses_repeat_averaged/responses_201025.npy",
        "cowley_v4/images/images_210325.zip",
    ):
        url, sha = FILES[rel]
        assert url.startswith(
            "https://raw.githubusercontent.com/cowleygroup/V4_compact_models/"
            "f4552ad9d34a466ebc66658f72a08a8e5038f1cf/data_V4_responses/"
        ) and len(sha) == 64


def test_cowley_v4(shared_data):
    da = load_brain_responses("cowley-v4")
    assert da.sizes == {"presentation": 640, "neuroid": 50, "repetition": 10}
    counts = n_repetitions(da)
    assert counts.min() == 6 and counts.max() == 10
    averaged = np.load(shared_data / "cowley_v4/responses_repeat_averaged/responses_210325.npy")
    np.testing.assert_allclose(average_repetitions(da).values, averaged.T)
    images = load_stimulus_set("cowley-v4")
    assert images.images.shape == (640, 112, 112, 3)
    assert list(images.stimulus_id) == list(da["stimulus_id"].values)
    natural = load_brain_responses("cowley-v4-natural")
    assert natural.sizes == {"presentation": 1200, "neuroid": 89}
    assert list(load_stimulus_set("cowley-v4-natural").stimulus_id) == list(
        natural["stimulus_id"].values)
    rdms, subject = load_brain_rdms("cowley-v4")
    assert rdms.n_cond == 640 and rdms.rdm_descriptors["roi"] == ["V4"] and subject == "subject"
