"""RDMs, CKA Grams and decorrelation of dask-backed activations, computed as dask graphs of
row-block tiles, equal the in-memory results; on a `LocalCluster` whose workers each have less
memory than the activation set."""

from __future__ import annotations

import os

import dask
import dask.array as da
import numpy as np
import pytest

from neuroalign.activations import ActivationWriter, flatten, open_activations
from neuroalign.analysis import calc_rdm, decorrelation, gram
from neuroalign.analysis.dask_gram import as_dask, dask_gram, default_block_bytes
from neuroalign.analysis.encoding_kernels import linear_kernel


def structured(n: int, d: int, seed: int = 0) -> np.ndarray:
    """float32 activations with shared structure, a large mean and a constant unit."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6), dtype=np.float32) @ rng.standard_normal((6, d), dtype=np.float32)
    x += rng.standard_normal((n, d), dtype=np.float32) + 10
    x[:, 3] = 2.5
    return x


@pytest.fixture(scope="module")
def x():
    return structured(70, 230)


@pytest.mark.parametrize("method", ["correlation", "euclidean", "cosine"])
def test_rdm_of_a_dask_array_equals_the_in_memory_rdm(x, method):
    ids = [f"s{i}" for i in range(len(x))]
    lazy = da.from_array(x, chunks=(16, 50))
    with dask.config.set(scheduler="threads"):
        # 9 rows a block: 8 blocks, every kind of tile (diagonal, off-diagonal, a short last one)
        got = calc_rdm(lazy.reshape(70, 10, 23), ids, method, chunk_size=40)
    with dask.config.set({"neuroalign.block_bytes": 9 * 230 * 4}):
        tiled = calc_rdm(lazy, ids, method, chunk_size=40)
    expected = calc_rdm(x.astype(np.float64), ids, method).get_vectors()
    scale = 1.0 if method != "euclidean" else np.abs(expected).max()
    for rdm in (got, tiled):
        np.testing.assert_allclose(rdm.get_vectors(), expected, atol=1e-6 * scale)
        assert rdm.pattern_descriptors["stimulus_id"] == ids


def test_tiles_assemble_the_gram_and_row_sums(x):
    lazy = da.from_array(x.astype(np.float64), chunks=(13, 230))
    g, s = dask_gram(lazy, np.asarray, chunk_size=17, block_bytes=11 * 230 * 8)
    xd = x.astype(np.float64)
    np.testing.assert_allclose(g, xd @ xd.T, rtol=1e-12)
    np.testing.assert_allclose(s, xd.sum(axis=1), rtol=1e-12)


def test_cka_gram_of_a_dask_array_equals_the_in_memory_gram(x):
    lazy = da.from_array(x, chunks=(20, 230))
    np.testing.assert_allclose(gram(lazy), gram(x), rtol=1e-9, atol=1e-9 * np.abs(gram(x)).max())


@pytest.mark.parametrize("units", ["varying", "all"])
def test_decorrelation_of_a_dask_array_equals_the_in_memory_metrics(x, units):
    lazy = da.from_array(x, chunks=(32, 100))
    got = decorrelation(lazy, units=units)
    expected = decorrelation(x, units=units)
    for key in ("L", "participation_ratio", "mean_abs_r"):
        assert got[key] == pytest.approx(expected[key], rel=1e-9), key
    assert (got["n_units"], got["n_constant_units"]) == (expected["n_units"], 1)


def test_dask_path_names_bad_stimuli_and_features(x):
    bad = x.copy()
    bad[5, 7] = np.nan
    ids = [f"s{i}" for i in range(len(x))]
    with pytest.raises(ValueError, match="s5"):
        calc_rdm(da.from_array(bad, chunks=(16, 230)), ids)
    with pytest.raises(ValueError, match=r"stimuli \[5\]"):
        gram(da.from_array(bad, chunks=(16, 230)))
    with pytest.raises(ValueError, match=r"features \[7\]"):
        decorrelation(da.from_array(bad, chunks=(16, 230)), mean_abs_r=False)


def test_as_dask_sees_xarray_and_ignores_numpy(x):
    import xarray as xr

    lazy = da.from_array(x)
    assert as_dask(lazy) is lazy
    assert as_dask(xr.DataArray(lazy)) is lazy
    assert as_dask(x) is None and as_dask(xr.DataArray(x)) is None


def test_local_cluster_workers_smaller_than_the_set(tmp_path):
    """Two workers with 600 MiB each (about 250 MiB of it their own code); the layer is 610 MiB
    (uncompressed, read from the file by the workers themselves). The RDM equals the
    in-memory one, so do CKA's centred Gram and the encoding kernel, and no worker is
    restarted for going over its limit."""
    distributed = pytest.importorskip("distributed")
    n, d = 500, 320_000
    path = tmp_path / "acts.nc"
    ids = np.array([f"im{i:04d}" for i in range(n)])
    x = np.empty((n, d), np.float32)
    with ActivationWriter(path, compression=None) as writer:
        for start in range(0, n, 100):
            x[start : start + 100] = structured(100, d, seed=start)
            writer.write_batch({"layer": x[start : start + 100]}, ids[start : start + 100])
    assert x.nbytes > 600 * 2**20
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="600MiB",
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        assert default_block_bytes() < x.nbytes // 12
        pids = client.run(os.getpid)
        tree = open_activations(path)
        try:
            lazy = flatten(tree, "layer")
            rdm = calc_rdm(lazy, ids, "correlation")
            cka_gram = gram(lazy)
            kernel = linear_kernel(lazy)
        finally:
            tree.close()
        assert client.run(os.getpid) == pids  # no worker went over its limit and was restarted
    np.testing.assert_allclose(rdm.get_vectors(), calc_rdm(x, ids, "correlation").get_vectors(),
                               atol=1e-6)
    # CKA's centred Gram and the encoding kernel (centred: its shift cancels), against float64
    # products of the set in memory, a row block at a time
    centred = np.empty((n, n))
    mean = x.mean(axis=0, dtype=np.float64)
    for start in range(0, n, 100):
        rows = x[start : start + 100] - mean
        for other in range(0, n, 100):
            centred[start : start + 100, other : other + 100] = rows @ (x[other : other + 100] - mean).T
    del x
    scale = np.abs(centred).max()
    np.testing.assert_allclose(cka_gram, centred, atol=1e-9 * scale)
    h = np.eye(n) - 1 / n
    np.testing.assert_allclose(h @ kernel.gram @ h, centred, atol=1e-6 * scale)
    assert kernel.n_features == d


def test_linear_kernel_of_a_dask_array_equals_the_in_memory_kernel(x):
    with dask.config.set({"neuroalign.block_bytes": 9 * 230 * 4}):
        got = linear_kernel(da.from_array(x, chunks=(16, 50)), chunk_size=40)
    expected = linear_kernel(x.astype(np.float64))
    assert got.n_features == expected.n_features == 230
    # both are kernels of features shifted by one vector; centred, any such shift cancels
    h = np.eye(len(x)) - 1 / len(x)
    centred = h @ expected.gram @ h
    np.testing.assert_allclose(h @ got.gram @ h, centred, atol=1e-6 * np.abs(centred).max())
    plain = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(centred, plain @ plain.T, atol=1e-9 * np.abs(centred).max())


def test_encoding_of_a_dask_layer_equals_the_in_memory_fit(x):
    from neuroalign.analysis import layerwise_encoding

    rng = np.random.default_rng(1)
    y = x[:, :40] @ rng.standard_normal((40, 3)) + rng.standard_normal((len(x), 3)) * 10
    with dask.config.set({"neuroalign.block_bytes": 9 * 230 * 4}):
        got = layerwise_encoding({"layer": da.from_array(x, chunks=(16, 50))}, y, folds=4)
    expected = layerwise_encoding({"layer": x}, y, folds=4, solver="kernel")
    assert str(got.solver.values[0]) == str(expected.solver.values[0])
    np.testing.assert_allclose(got.r.values, expected.r.values, atol=1e-6)
    assert np.all(expected.r.values > 0.3)  # the fit found the signal (not a vacuous equality)
