import netCDF4
import numpy as np
import pytest
import torch
import xarray as xr

from neuroalign.activations import ActivationWriter, flatten, open_activations
from neuroalign.analysis.decorrelation import (
    bootstrap_decorrelation,
    decorrelation,
    layerwise_decorrelation,
)
from neuroalign.analysis.rdms import calc_rdm
from neuroalign.analysis.streaming import feature_chunks, feature_slices, layer_chunks

N = 30


def correlated(n, d, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)) @ rng.normal(size=(4, d)) + rng.normal(size=(n, d)) + 3.0


@pytest.fixture(scope="module")
def activation_file(tmp_path_factory):
    """A small activation file: a conv layer (n, 6, 5, 4), a token layer (n, 3, 7), an fc layer."""
    rng = np.random.default_rng(0)
    layers = {
        "conv": correlated(N, 120, seed=1).reshape(N, 6, 5, 4).astype(np.float32),
        "blocks.1": correlated(N, 21, seed=2).reshape(N, 3, 7).astype(np.float32),
        "fc": rng.normal(size=(N, 9)).astype(np.float32),
    }
    layers["conv"][:, 2] = 0.5  # a constant channel: 20 constant units
    path = tmp_path_factory.mktemp("acts") / "acts.nc"
    ids = np.array([f"im{i:03d}" for i in range(N)])
    with ActivationWriter(path, compression_level=1) as writer:
        for start in range(0, N, 8):  # several batches
            writer.write_batch(
                {k: v[start : start + 8] for k, v in layers.items()}, ids[start : start + 8]
            )
    return path, layers, ids


@pytest.mark.parametrize("shape", [(5, 6, 5, 4), (5, 3, 7), (5, 9), (5, 2, 1, 300)])
@pytest.mark.parametrize("chunk_size", [1, 3, 7, 20, 10_000])
def test_feature_slices_cover_the_features_in_order(shape, chunk_size):
    x = np.arange(np.prod(shape)).reshape(shape)
    pieces = [x[sel].reshape(shape[0], -1) for sel in feature_slices(shape, chunk_size)]
    assert all(0 < p.shape[1] <= chunk_size for p in pieces)
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), x.reshape(shape[0], -1))


def test_feature_chunks_of_lazy_and_torch_arrays_agree(activation_file):
    path, layers, _ = activation_file
    x = layers["conv"]
    expected = x.reshape(N, -1)
    with netCDF4.Dataset(path) as ds:
        var = ds["conv"]["activation"]
        from_var = np.concatenate(list(feature_chunks(var, 13)), axis=1)
    tensor = torch.concatenate(list(feature_chunks(torch.from_numpy(x), 13)), dim=1)
    dataarray = xr.DataArray(x).chunk({"dim_0": 8})  # dask-backed
    from_dask = np.concatenate(list(feature_chunks(dataarray, 13)), axis=1)
    for got in (from_var, tensor.numpy(), from_dask):
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="chunk_size"):
        next(feature_chunks(x, 0))
    with pytest.raises(TypeError, match="iterable of"):
        next(feature_chunks(3.0))


def test_layer_chunks_read_the_layer_as_flatten_does(activation_file):
    path, _, _ = activation_file
    tree = open_activations(path, chunks=None)
    try:
        for layer in ("conv", "blocks.1", "blocks/1", "fc"):
            chunks = list(layer_chunks(path, layer, chunk_size=16))
            assert max(c.shape[1] for c in chunks) <= 16
            np.testing.assert_array_equal(
                np.concatenate(chunks, axis=1), flatten(tree, layer).values
            )
    finally:
        tree.close()
    with pytest.raises(ValueError, match=r"No layer 'blocks\.2'.*Did you mean"):
        layer_chunks(path, "blocks.2")
    with pytest.raises(FileNotFoundError, match="missing.nc"):
        layer_chunks(path.parent / "missing.nc", "conv")


@pytest.mark.parametrize("layer", ["conv", "blocks.1", "fc"])
def test_streamed_decorrelation_equals_in_memory(activation_file, layer):
    path, layers, _ = activation_file
    x = layers[layer].astype(np.float64)
    original = x.copy()
    in_memory = decorrelation(x)
    streams = {
        "file": decorrelation(list(layer_chunks(path, layer, chunk_size=16))),
        "file, one pass": decorrelation(layer_chunks(path, layer, 16), mean_abs_r=False),
        "array": decorrelation(x, chunk_size=11),
        "torch": decorrelation(torch.from_numpy(x), chunk_size=5),
    }
    for name, out in streams.items():
        assert out["n_units"] == in_memory["n_units"], name
        assert out["n_constant_units"] == in_memory["n_constant_units"], name
        for key in ("L", "mean_abs_r", "participation_ratio"):
            if np.isnan(out[key]) and name == "file, one pass":
                continue
            assert out[key] == pytest.approx(in_memory[key], rel=1e-10, abs=1e-12), (name, key)
    np.testing.assert_array_equal(x, original)  # chunks are standardised in copies
    if layer == "conv":
        assert in_memory["n_constant_units"] == 20


def test_streamed_decorrelation_when_units_outnumber_stimuli():
    # D > n and D < n take different Gram matrices in memory; streamed is always n x n
    for d in (7, 400):
        x = correlated(25, d, seed=d)
        a, b = decorrelation(x), decorrelation(x, chunk_size=3)
        for key in ("L", "mean_abs_r", "participation_ratio"):
            assert b[key] == pytest.approx(a[key], rel=1e-10), (d, key)


def test_streamed_decorrelation_errors():
    x = correlated(N, 40)
    with pytest.raises(ValueError, match="one-shot iterator.*mean_abs_r=False"):
        decorrelation(iter([x[:, :20], x[:, 20:]]))
    with pytest.raises(ValueError, match="chunk 1 has 29"):
        decorrelation([x[:, :20], x[:-1, 20:]], mean_abs_r=False)
    bad = x.copy()
    bad[4, 30] = np.inf
    with pytest.raises(ValueError, match=r"feature chunk 1 .*stimuli \(rows\) \[4\]"):
        decorrelation([bad[:, :20], bad[:, 20:]])
    with pytest.raises(ValueError, match="constant"):
        decorrelation([np.ones((5, 3)), np.zeros((5, 2))])
    with pytest.raises(ValueError, match="needs the layer in memory"):
        bootstrap_decorrelation([x[:, :20], x[:, 20:]])


def test_layerwise_decorrelation_streams_each_layer(activation_file):
    path, layers, _ = activation_file
    streamed = layerwise_decorrelation(
        ((layer, layer_chunks(path, layer, 10)) for layer in layers), mean_abs_r=False
    )
    whole = layerwise_decorrelation(
        {k: v.astype(np.float64) for k, v in layers.items()}, mean_abs_r=False
    )
    np.testing.assert_allclose(streamed["L"], whole["L"], rtol=1e-10)
    np.testing.assert_allclose(
        streamed["participation_ratio"], whole["participation_ratio"], rtol=1e-10
    )
    chunked = layerwise_decorrelation(layers, chunk_size=7)
    np.testing.assert_allclose(
        chunked["mean_abs_r"], layerwise_decorrelation(layers)["mean_abs_r"], rtol=1e-10
    )


@pytest.mark.parametrize("method", ["correlation", "cosine", "euclidean"])
def test_rdm_streamed_from_the_file_equals_in_memory(activation_file, method):
    path, layers, ids = activation_file
    x = layers["conv"].astype(np.float64)
    streamed = calc_rdm(layer_chunks(path, "conv", chunk_size=9), ids, method)
    whole = calc_rdm(x, ids, method, chunk_size=10_000)
    # float32 from the file: float32 products, summed in float64 (the rdms module's 1e-6 rule)
    np.testing.assert_allclose(streamed.get_vectors(), whole.get_vectors(), rtol=0, atol=1e-6)
    # a 4-D netCDF4 variable is sliced along features, not loaded whole
    with netCDF4.Dataset(path) as ds:
        lazy = calc_rdm(ds["conv"]["activation"], ids, method, chunk_size=9)
    np.testing.assert_allclose(lazy.get_vectors(), whole.get_vectors(), rtol=0, atol=1e-6)


def test_dask_backed_layer_is_streamed(activation_file):
    path, layers, ids = activation_file
    x = layers["conv"].astype(np.float64)
    tree = open_activations(path)  # dask-backed
    try:
        flat = flatten(tree, "conv")
        assert flat.chunks is not None
        out = decorrelation(flat, chunk_size=25)
        rdm = calc_rdm(flat, ids, chunk_size=25)
    finally:
        tree.close()
    expected = decorrelation(x)
    for key in ("L", "mean_abs_r", "participation_ratio"):
        assert out[key] == pytest.approx(expected[key], rel=1e-10), key
    np.testing.assert_allclose(rdm.get_vectors(), calc_rdm(x, ids).get_vectors(), atol=1e-6)
