"""The activation file contract: writer, reader, flatten and rsatoolbox conversion (no torch)."""

import netCDF4
import numpy as np
import pytest
import xarray as xr
from scipy.spatial.distance import pdist

from neuroalign.activations import (
    ActivationWriter,
    flatten,
    group_path,
    layer_activation,
    layer_names,
    open_activations,
    partial_path,
    to_rsatoolbox,
)

N = 11


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    return {
        "features": rng.normal(size=(N, 4, 3, 3)).astype("f4"),
        "features.0": rng.normal(size=(N, 8, 2, 5)).astype("f4"),  # nested, other sizes
        "enc.blocks.3": rng.normal(size=(N, 5, 6)).astype("f4"),
        "head": rng.normal(size=(N, 7)).astype("f4"),
    }


IDS = np.array([f"stim_{i:02d}" for i in range(N)])[::-1]  # not sorted: order must hold
LABELS = np.arange(N) % 3
CATS = np.array(["face", "body", "object", "scene"] * 3)[:N]
FLAGS = np.arange(N) % 2 == 0


def _write(path, arrays, batch=4, **kwargs):
    with ActivationWriter(path, attrs={"model": "toy", "seed": 3, "trained": True}, **kwargs) as w:
        for s in range(0, N, batch):
            w.write_batch(
                {k: v[s : s + batch] for k, v in arrays.items()},
                IDS[s : s + batch],
                coords={
                    "label": LABELS[s : s + batch],
                    "category": CATS[s : s + batch],
                    "flag": FLAGS[s : s + batch],
                },
            )
    return path


def test_round_trip_values_ids_coords_attrs(tmp_path, arrays):
    path = _write(tmp_path / "acts.nc", arrays)
    assert not partial_path(path).exists()
    tree = open_activations(path)
    assert layer_names(tree) == list(arrays)
    np.testing.assert_array_equal(tree["stimulus_id"].values, IDS)
    np.testing.assert_array_equal(tree["label"].values, LABELS)
    np.testing.assert_array_equal(tree["category"].values, CATS)
    assert tree["flag"].dtype == bool
    np.testing.assert_array_equal(tree["flag"].values, FLAGS)
    for layer, values in arrays.items():
        da = layer_activation(tree, layer)
        assert da.dims[0] == "presentation"
        np.testing.assert_array_equal(da.values, values)
        np.testing.assert_array_equal(da["stimulus_id"].values, IDS)
        # each layer node is self-describing
        node_da = tree[group_path(layer)]["activation"]
        np.testing.assert_array_equal(node_da["stimulus_id"].values, IDS)
    assert layer_activation(tree, "features.0").dims == ("presentation", "channel", "y", "x")
    assert layer_activation(tree, "enc.blocks.3").dims == ("presentation", "token", "feature")
    assert layer_activation(tree, "head").dims == ("presentation", "feature")
    assert tree.attrs["model"] == "toy" and tree.attrs["seed"] == 3
    assert tree.attrs["trained"] == 1
    assert tree.attrs["schema_version"] == 1
    for key in ("created", "neuroalign_version", "xarray_version", "h5netcdf_version", "hdf5_version"):
        assert isinstance(tree.attrs[key], str) and tree.attrs[key]
    tree.close()


def test_lazy_reading(tmp_path, arrays):
    path = _write(tmp_path / "acts.nc", arrays)
    tree = open_activations(path, chunks="auto")
    da = layer_activation(tree, "features")
    assert hasattr(da.data, "dask")
    np.testing.assert_array_equal(da.values, arrays["features"])
    tree.close()
    tree = open_activations(path, chunks=None)
    np.testing.assert_array_equal(layer_activation(tree, "head").values, arrays["head"])
    tree.close()


def test_plain_netcdf4_and_open_datatree(tmp_path, arrays):
    path = _write(tmp_path / "acts.nc", arrays)
    with netCDF4.Dataset(path) as ds:
        assert ds.dimensions["presentation"].isunlimited()
        assert len(ds.dimensions["presentation"]) == N
        assert list(ds["stimulus_id"][:]) == list(IDS)
        assert ds.getncattr("layers") == ",".join(arrays)
        assert set(ds.groups) == {"features", "enc", "head"}
        for layer, values in arrays.items():
            group = ds[group_path(layer)]
            assert group.getncattr("layer") == layer
            var = group["activation"]
            assert var.dtype == np.float32
            assert var.filters()["zlib"] is True
            assert var.chunking()[0] == 4  # chunked by batch
            np.testing.assert_array_equal(var[:], values)
        # nested layer with other sizes: its dims are suffixed so xarray can align the tree
        assert ds["features/0/activation"].dimensions == ("presentation", "channel_1", "y_1", "x_1")
        assert ds["features/0/activation"].getncattr("axes") == "presentation channel y x"
    tree = xr.open_datatree(path, engine="netcdf4")  # plain xarray, no neuroalign
    assert tree["enc/blocks/3"]["activation"].shape == (N, 5, 6)
    np.testing.assert_array_equal(tree["features/0/activation"].values, arrays["features.0"])
    tree.close()


def test_partial_file_on_failure(tmp_path, arrays):
    path = tmp_path / "acts.nc"
    with pytest.raises(RuntimeError, match="boom"):
        with ActivationWriter(path, attrs={}) as w:
            w.write_batch({"head": arrays["head"][:4]}, IDS[:4])
            raise RuntimeError("boom")
    assert partial_path(path).exists() and not path.exists()
    with pytest.raises(FileNotFoundError, match="partial"):
        open_activations(path)
    # an existing finished file is replaced only on success
    _write(path, arrays)
    before = path.stat().st_mtime_ns
    with pytest.raises(RuntimeError):
        with ActivationWriter(path, attrs={}) as w:
            raise RuntimeError("boom")
    assert path.stat().st_mtime_ns == before
    tree = open_activations(path)
    np.testing.assert_array_equal(layer_activation(tree, "head").values, arrays["head"])
    tree.close()


def test_no_batch_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="No batch"):
        with ActivationWriter(tmp_path / "a.nc", attrs={}):
            pass
    assert not (tmp_path / "a.nc").exists()


def test_float16_precision(tmp_path, arrays):
    big = {"big": np.full((N, 3), 1e6, "f4")}  # beyond float16's range: must stay finite
    path = _write(tmp_path / "acts16.nc", {**arrays, **big}, dtype="float16")
    full = _write(tmp_path / "acts32.nc", {**arrays, **big})
    with netCDF4.Dataset(path) as ds:
        var = ds["features/activation"]
        assert var.dtype == np.float32  # netCDF has no 16-bit float: float32, rounded
        assert var.getncattr("_QuantizeBitRoundNumberOfSignificantBits") == 10
    tree = open_activations(path)
    for layer, values in arrays.items():
        stored = layer_activation(tree, layer).values
        assert not np.array_equal(stored, values)  # rounding happened
        # float16 precision: relative error at most 2**-11 (float16's unit roundoff)
        np.testing.assert_array_less(np.abs(stored - values), 2.0**-11 * np.abs(values) + 1e-30)
    np.testing.assert_allclose(layer_activation(tree, "big").values, 1e6, rtol=2.0**-11)
    tree.close()
    assert path.stat().st_size < full.stat().st_size
    with pytest.raises(ValueError, match="'dtype'.*float32"):
        ActivationWriter(tmp_path / "x.nc", attrs={}, dtype="float64")


def test_nonfinite_policy(tmp_path):
    x = np.ones((3, 4), "f4")
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"'blocks.2'.*NaN.*'b'"):
        with ActivationWriter(tmp_path / "n.nc", attrs={}) as w:
            w.write_batch({"blocks.2": x}, ["a", "b", "c"])
    assert partial_path(tmp_path / "n.nc").exists()
    with pytest.warns(RuntimeWarning, match="blocks.2"):
        with ActivationWriter(tmp_path / "w.nc", attrs={}, nonfinite="warn") as w:
            w.write_batch({"blocks.2": x}, ["a", "b", "c"])
    tree = open_activations(tmp_path / "w.nc")
    assert np.isnan(layer_activation(tree, "blocks.2").values[1, 2])
    tree.close()


def test_batch_consistency_errors(tmp_path, arrays):
    with pytest.raises(ValueError, match=r"'head'.*\(6,\).*\(7,\)"):
        with ActivationWriter(tmp_path / "a.nc", attrs={}) as w:
            w.write_batch({"head": np.zeros((2, 7), "f4")}, ["a", "b"])
            w.write_batch({"head": np.zeros((2, 6), "f4")}, ["c", "d"])
    with pytest.raises(ValueError, match=r"missing \['head'\]"):
        with ActivationWriter(tmp_path / "b.nc", attrs={}) as w:
            w.write_batch({"head": np.zeros((2, 7), "f4")}, ["a", "b"])
            w.write_batch({"other": np.zeros((2, 7), "f4")}, ["c", "d"])
    with pytest.raises(ValueError, match="repeated.*'b'"):
        with ActivationWriter(tmp_path / "c.nc", attrs={}) as w:
            w.write_batch({"head": np.zeros((2, 7), "f4")}, ["a", "b"])
            w.write_batch({"head": np.zeros((2, 7), "f4")}, ["b", "c"])
    with pytest.raises(ValueError, match=r"'head'.*b = 3"):
        with ActivationWriter(tmp_path / "d.nc", attrs={}) as w:
            w.write_batch({"head": np.zeros((2, 7), "f4")}, ["a", "b", "c"])


def test_attribute_checks(tmp_path):
    with pytest.raises(TypeError, match="'mean'.*list"):
        ActivationWriter(tmp_path / "a.nc", attrs={"mean": [0.5, 0.5, 0.5]})
    with pytest.raises(ValueError, match="'layers'.*reserved"):
        ActivationWriter(tmp_path / "a.nc", attrs={"layers": "x"})
    with pytest.raises(FileNotFoundError, match="missing"):
        ActivationWriter(tmp_path / "missing" / "a.nc", attrs={})
    with pytest.raises(ValueError, match="'label.conv'.*clash.*'label'"):
        with ActivationWriter(tmp_path / "b.nc", attrs={}) as w:
            w.write_batch({"label.conv": np.zeros((1, 2), "f4")}, ["a"], coords={"label": [1]})
    with pytest.raises(ValueError, match="'stimulus_id' is not allowed"):
        with ActivationWriter(tmp_path / "c.nc", attrs={}) as w:
            w.write_batch({"x": np.zeros((1, 2), "f4")}, ["a"], coords={"stimulus_id": ["a"]})


def test_wrong_layer_name_suggests_close_names(tmp_path, arrays):
    tree = open_activations(_write(tmp_path / "acts.nc", arrays))
    with pytest.raises(ValueError, match=r"'enc.block.3'.*Did you mean \['enc.blocks.3'\]"):
        layer_activation(tree, "enc.block.3")
    np.testing.assert_array_equal(  # group paths work too
        layer_activation(tree, "enc/blocks/3").values, arrays["enc.blocks.3"]
    )
    tree.close()


def test_flatten_neuroid_coords(tmp_path, arrays):
    tree = open_activations(_write(tmp_path / "acts.nc", arrays))
    for layer, axes in [
        ("features.0", ("channel", "y", "x")),
        ("enc.blocks.3", ("token", "feature")),
        ("head", ("feature",)),
    ]:
        flat = flatten(tree, layer)
        values = arrays[layer]
        assert flat.dims == ("presentation", "neuroid")
        assert flat.shape == (N, int(np.prod(values.shape[1:])))
        assert list(flat.indexes["neuroid"].names) == ["layer", *axes]
        assert set(flat["layer"].values) == {layer}
        flat_values = flat.values
        idx = [flat[a].values for a in axes]
        for k in range(flat.sizes["neuroid"]):  # plain loop reference
            np.testing.assert_array_equal(
                flat_values[:, k], values[(slice(None), *[i[k] for i in idx])]
            )
        np.testing.assert_array_equal(flat["stimulus_id"].values, IDS)
        # every (channel, y, x) appears exactly once
        assert len(set(zip(*idx, strict=True))) == flat.sizes["neuroid"]
    tree.close()
    with netCDF4.Dataset(tmp_path / "acts.nc") as ds:  # MultiIndex never written
        assert "neuroid" not in ds.dimensions


def test_to_rsatoolbox(tmp_path, arrays):
    import rsatoolbox

    tree = open_activations(_write(tmp_path / "acts.nc", arrays))
    ds = to_rsatoolbox(tree, "features.0")
    np.testing.assert_array_equal(ds.measurements, arrays["features.0"].reshape(N, -1))
    np.testing.assert_array_equal(ds.obs_descriptors["stimulus_id"], IDS)
    np.testing.assert_array_equal(ds.obs_descriptors["category"], CATS)
    assert ds.descriptors["layer"] == "features.0"
    assert ds.descriptors["model"] == "toy"
    assert len(ds.channel_descriptors["channel"]) == 8 * 2 * 5
    rdm = rsatoolbox.rdm.calc_rdm(ds, method="euclidean")
    x = arrays["features.0"].reshape(N, -1).astype(np.float64)
    ref = pdist(x, "sqeuclidean") / x.shape[1]  # rsatoolbox's euclidean: mean squared diff
    np.testing.assert_allclose(rdm.get_vectors()[0], ref, rtol=1e-4)
    np.testing.assert_array_equal(rdm.pattern_descriptors["stimulus_id"], IDS)
    tree.close()


def test_open_rejects_other_netcdf(tmp_path):
    xr.Dataset({"v": ("x", np.arange(3.0))}).to_netcdf(tmp_path / "other.nc", engine="netcdf4")
    with pytest.raises(ValueError, match="not a neuroalign activation file"):
        open_activations(tmp_path / "other.nc")
    with pytest.raises(FileNotFoundError, match="nope.nc"):
        open_activations(tmp_path / "nope.nc")
