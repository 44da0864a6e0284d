"""calc_rdm's precision rule (float32 products per feature chunk, summed in float64: within
1e-6 of float64), its checks read from the Gram diagonal, and RDMs of a file read in blocks
of stimuli."""

import numpy as np
import pytest
import torch

import neuroalign.analysis._rdm_gram as rdm_gram
from neuroalign.activations import ActivationWriter
from neuroalign.analysis.rdms import calc_rdm
from neuroalign.analysis.streaming import layer_blocks, layer_chunks
from neuroalign.workflows import iter_layer_blocks, layer_rdms_from_file

N = 40
IDS = np.array([f"im{i:03d}" for i in range(N)])


def float64_rdm(x, method):
    """The plain float64 computation, as the formulas read (upper triangle)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    d = x.shape[1]
    out = []
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            a, b = x[i], x[j]
            if method == "euclidean":
                out.append(np.sum((a - b) ** 2) / d)
            elif method == "correlation":
                a, b = a - a.mean(), b - b.mean()
                out.append(1 - a @ b / np.sqrt((a @ a) * (b @ b)))
            else:
                out.append(1 - a @ b / np.sqrt((a @ a) * (b @ b)))
    return np.array(out)


def large_mean_float32(n=N, d=9000, mean=300.0, seed=0):
    """Structured float32 activations whose means (per stimulus and per feature) dwarf their
    spread: without a shift, float32 products lose the RDM entirely."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)) @ rng.normal(size=(5, d)) + rng.normal(size=(n, d))
    x += mean + rng.normal(size=(n, 1)) * 30 + rng.normal(size=(1, d)) * 10
    return x.astype(np.float32)


@pytest.mark.parametrize("method", ["correlation", "euclidean", "cosine"])
@pytest.mark.parametrize("chunk_size", [4096, 700])
def test_float32_rdm_within_1e6_of_float64(method, chunk_size):
    x = large_mean_float32()
    expected = float64_rdm(x, method)
    scale = np.abs(expected).max() if method == "euclidean" else 1.0
    got = calc_rdm(x, IDS, method, chunk_size=chunk_size).get_vectors()[0]
    assert np.abs(got - expected).max() <= 1e-6 * scale
    # the same from a torch tensor and from a stream of chunks
    tensor = calc_rdm(torch.from_numpy(x), IDS, method, chunk_size=chunk_size).get_vectors()[0]
    stream = calc_rdm((x[:, s : s + 1000] for s in range(0, x.shape[1], 1000)), IDS, method)
    for other in (tensor, stream.get_vectors()[0]):
        assert np.abs(other - expected).max() <= 1e-6 * scale


@pytest.mark.parametrize("method", ["correlation", "euclidean", "cosine"])
def test_torch_path_on_another_device_agrees(method, monkeypatch):
    # the torch path runs wherever the device is not the CPU; run it on the CPU here
    monkeypatch.setattr(rdm_gram, "_is_cpu", lambda device: False)
    x = large_mean_float32(d=3000)
    numpy_path = float64_rdm(x, method)
    scale = np.abs(numpy_path).max() if method == "euclidean" else 1.0
    got = calc_rdm(torch.from_numpy(x), IDS, method, chunk_size=1000, device="cpu")
    assert np.abs(got.get_vectors()[0] - numpy_path).max() <= 1e-6 * scale
    bad = x.copy()
    bad[3, 2500] = np.nan
    with pytest.raises(ValueError, match=r"NaN/infinite values for stimuli \['im003'\]"):
        calc_rdm(torch.from_numpy(bad), IDS, method, chunk_size=1000, device="cpu")


@pytest.mark.parametrize("method", ["correlation", "euclidean", "cosine"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_infinite_rows_are_named(method, dtype):
    x = large_mean_float32(d=500).astype(dtype)
    x[2, 0] = np.nan  # in the first chunk: the rows the shifts come from
    x[31, 450] = -np.inf
    for data in (x, torch.from_numpy(x), [x[:, :100], x[:, 100:]]):
        with pytest.raises(ValueError, match=r"NaN/infinite values for stimuli \['im002', 'im031'\]"):
            calc_rdm(data, IDS, method, chunk_size=128)


def test_constant_and_zero_rows_are_named():
    x = large_mean_float32(d=500)
    x[[4, 17]] = np.float32(0.1)  # constant, at a value float32 cannot hold exactly
    for data in (x, x.astype(np.float64), torch.from_numpy(x)):
        with pytest.raises(ValueError, match=r"stimuli \['im004', 'im017'\] are constant"):
            calc_rdm(data, IDS, "correlation", chunk_size=128)
        calc_rdm(data, IDS, "euclidean")  # defined
    x[9] = 0.0
    with pytest.raises(ValueError, match=r"stimuli \['im009'\] are all zero"):
        calc_rdm(x, IDS, "cosine")


@pytest.fixture(scope="module")
def block_file(tmp_path_factory):
    """A compressed file whose disk chunks are 8 stimuli: 6 batches of 8, the last one 3."""
    x = large_mean_float32(n=43, d=6 * 10 * 10, seed=2).reshape(43, 6, 10, 10)
    ids = np.array([f"s{i:02d}" for i in range(43)])
    path = tmp_path_factory.mktemp("blocks") / "acts.nc"
    with ActivationWriter(path, compression_level=1) as writer:
        for start in range(0, 43, 8):
            writer.write_batch({"encoder.conv": x[start : start + 8]}, ids[start : start + 8])
    return path, x, ids


@pytest.mark.parametrize("method", ["correlation", "euclidean", "cosine"])
def test_file_rdm_read_in_stimulus_blocks_equals_in_memory(block_file, method):
    path, x, ids = block_file
    row_bytes = 4 * 600
    blocks = layer_blocks(path, "encoder/conv", max_bytes=2 * 16 * row_bytes)  # 16 rows a group
    assert blocks.shape == (43, 600)
    assert blocks.bounds == [(0, 16), (16, 32), (32, 43)]  # whole disk chunks; uneven last
    whole = layer_blocks(path, "encoder.conv")
    assert whole.bounds == [(0, 43)]
    expected = float64_rdm(x, method)
    scale = np.abs(expected).max() if method == "euclidean" else 1.0
    in_memory = calc_rdm(x, ids, method, chunk_size=256).get_vectors()[0]
    for source in (blocks, whole, layer_chunks(path, "encoder.conv", 256)):
        got = calc_rdm(source, ids, method, chunk_size=256).get_vectors()[0]
        assert np.abs(got - expected).max() <= 1e-6 * scale
        assert np.abs(got - in_memory).max() <= 1e-6 * scale
    one_chunk_rows = layer_blocks(path, "encoder.conv", max_bytes=1)  # at least a disk chunk
    assert one_chunk_rows.bounds[0] == (0, 8) and one_chunk_rows.bounds[-1] == (40, 43)
    got = calc_rdm(one_chunk_rows, ids, method, chunk_size=256).get_vectors()[0]
    assert np.abs(got - expected).max() <= 1e-6 * scale
    from_file = layer_rdms_from_file(path, rdm_method=method, chunk_size=256)
    assert from_file.rdm_descriptors["layer"] == ["encoder.conv"]
    assert np.abs(from_file.get_vectors()[0] - expected).max() <= 1e-6 * scale


def test_block_read_errors_name_the_stimuli(block_file, tmp_path):
    path, x, ids = block_file
    bad = x.copy()
    bad[37, 1, 2, 3] = np.nan
    bad[5] = 2.5
    other = tmp_path / "bad.nc"
    with pytest.warns(RuntimeWarning, match="NaN"), ActivationWriter(
        other, compression_level=1, nonfinite="warn"
    ) as writer:
        for start in range(0, 43, 8):
            writer.write_batch({"conv": bad[start : start + 8]}, ids[start : start + 8])
    [(_, blocks)] = iter_layer_blocks(other, max_bytes=2 * 16 * 4 * 600)
    with pytest.raises(ValueError, match=r"NaN/infinite values for stimuli \['s37'\]"):
        calc_rdm(blocks, ids)
    bad[37] = 1.0
    other = tmp_path / "constant.nc"
    with ActivationWriter(other, compression_level=1) as writer:
        for start in range(0, 43, 8):
            writer.write_batch({"conv": bad[start : start + 8]}, ids[start : start + 8])
    with pytest.raises(ValueError, match=r"stimuli \['s05', 's37'\] are constant"):
        calc_rdm(layer_blocks(other, "conv", max_bytes=2 * 16 * 4 * 600), ids)
    with pytest.raises(ValueError, match="max_bytes"):
        layer_blocks(other, "conv", max_bytes=0)
    with pytest.raises(ValueError, match="No layer 'conv2'"):
        layer_blocks(other, "conv2")
