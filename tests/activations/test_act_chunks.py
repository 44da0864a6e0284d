"""How activation chunks reach the disk: shuffle + deflate done by the writer, stored with HDF5's
direct chunk write, readable by netCDF-C; the fallbacks (plain zlib, misaligned batches)."""

import zlib

import h5py
import netCDF4
import numpy as np
import pytest
import torch
from torch import nn

from neuroalign.activations import ActivationWriter, bitround, codec
from neuroalign.data.stimuli import StimulusSet
from neuroalign.extraction import ImageTransform, extract, image_transform


def relu_like(rng, shape):
    return np.maximum(rng.normal(size=shape), 0).astype("f4")


def write(path, batches, **kwargs):
    with ActivationWriter(path, **kwargs) as writer:
        start = 0
        for batch in batches:
            b = len(next(iter(batch.values())))
            writer.write_batch(batch, [f"s{i}" for i in range(start, start + b)])
            start += b
    return path


def test_chunks_are_hdf5_shuffle_and_deflate(tmp_path):
    rng = np.random.default_rng(0)
    data = relu_like(rng, (10, 3, 4, 5))
    path = write(tmp_path / "a.nc", [{"conv": data[:4]}, {"conv": data[4:8]}, {"conv": data[8:]}])
    with netCDF4.Dataset(path) as ds:  # netCDF-C decodes it with its own filters
        var = ds["conv/activation"]
        assert var.filters()["zlib"] and var.filters()["shuffle"]
        assert var.chunking() == [4, 3, 4, 5]
        np.testing.assert_array_equal(var[:], data)
    with h5py.File(path) as f:  # the stored bytes of the first chunk, decoded by hand
        mask, stored = f["conv/activation"].id.read_direct_chunk((0, 0, 0, 0))
        assert mask == 0
        shuffled = np.frombuffer(zlib.decompress(stored), np.uint8).reshape(4, -1)
        unshuffled = shuffled.T.copy().view("f4").reshape(4, 3, 4, 5)
        np.testing.assert_array_equal(unshuffled, data[:4])
        # the last chunk holds 2 stimuli and is stored whole, padded with zeros
        _, stored = f["conv/activation"].id.read_direct_chunk((8, 0, 0, 0))
        last = np.frombuffer(zlib.decompress(stored), np.uint8).reshape(4, -1).T.copy()
        last = last.view("f4").reshape(4, 3, 4, 5)
        np.testing.assert_array_equal(last[:2], data[8:])
        assert not last[2:].any()


def test_standard_zlib_and_threads_give_the_same_values(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    batches = [{"a": relu_like(rng, (6, 40)), "b": relu_like(rng, (6, 2, 3))} for _ in range(3)]
    one = write(tmp_path / "one.nc", batches, compression_threads=1)
    three = write(tmp_path / "three.nc", batches, compression_threads=3)
    monkeypatch.setattr(codec, "_DEFLATE", zlib.compress)  # no python-isal
    plain = write(tmp_path / "plain.nc", batches, compression_level=6)
    for path in (one, three, plain):
        with netCDF4.Dataset(path) as ds:
            for layer in ("a", "b"):
                expected = np.concatenate([b[layer] for b in batches])
                np.testing.assert_array_equal(ds[f"{layer}/activation"][:], expected)
    with netCDF4.Dataset(plain) as ds:
        assert ds["a/activation"].filters()["complevel"] == 6


def test_uncompressed_chunks(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.normal(size=(7, 9)).astype("f4")
    path = write(tmp_path / "raw.nc", [{"x": data[:3]}, {"x": data[3:6]}, {"x": data[6:]}],
                 compression=None)
    with netCDF4.Dataset(path) as ds:
        assert not ds["x/activation"].filters()["zlib"]
        np.testing.assert_array_equal(ds["x/activation"][:], data)


def test_bitround_equals_netcdf_quantisation(tmp_path):
    rng = np.random.default_rng(3)
    values = np.concatenate([
        rng.normal(size=5000) * 10.0 ** rng.integers(-8, 8, 5000),
        [0.0, -0.0, 1.0, 65504.0, 1e6, -3.0e-30, 1.0009765625, 1.00048828125],
    ]).astype("f4")
    with netCDF4.Dataset(tmp_path / "q.nc", "w") as ds:
        ds.createDimension("n", len(values))
        var = ds.createVariable("v", "f4", ("n",), quantize_mode="BitRound",
                                significant_digits=10)
        var[:] = values
    with netCDF4.Dataset(tmp_path / "q.nc") as ds:
        reference = ds["v"][:].data
    np.testing.assert_array_equal(bitround(values).view("u4"), reference.view("u4"))


def test_image_transform_batch_is_bit_identical_to_per_image():
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (5, 12, 12, 3), dtype=np.uint8)
    stimuli = StimulusSet(stimulus_id=[str(i) for i in range(5)], images=pixels)
    for transform, _ in (image_transform(12), image_transform(12, [0.4, 0.5, 0.6], [0.2, 0.3, 0.25])):
        per_image = torch.stack([transform(stimuli.image(i)) for i in range(5)])
        assert torch.equal(transform.batch(pixels), per_image)
    assert ImageTransform(10).batch(pixels) is None  # needs Resize: per image instead


def test_overlapped_and_in_turn_runs_write_the_same_file(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 14 * 14, 5))
    rng = np.random.default_rng(5)
    stimuli = StimulusSet(stimulus_id=[f"i{i}" for i in range(13)],
                          images=rng.integers(0, 256, (13, 16, 16, 3), dtype=np.uint8))
    files = {
        overlap: extract(model, stimuli, ["1", "3"], tmp_path / f"{overlap}.nc",
                         transform=image_transform(16), batch_size=4, overlap=overlap,
                         progress=False)
        for overlap in (True, False)
    }
    with netCDF4.Dataset(files[True]) as a, netCDF4.Dataset(files[False]) as b:
        for name in ("1/activation", "3/activation"):
            np.testing.assert_array_equal(a[name][:], b[name][:])
        assert list(a["stimulus_id"][:]) == list(b["stimulus_id"][:])


def test_bad_threads(tmp_path):
    for threads in (1, 2):
        ActivationWriter(tmp_path / f"ok{threads}.nc", compression_threads=threads).abort()
    with pytest.raises(ValueError, match="'compression_threads' must be a positive int"):
        ActivationWriter(tmp_path / "bad.nc", compression_threads=0)


def test_chunk_rule_and_stimuli_larger_than_4_mib(tmp_path):
    def reference(b, nbytes):  # the documented rule, written out plainly
        fitting = [c for c in range(1, b + 1) if b % c == 0 and c * nbytes <= 4 * 2**20]
        return max(fitting) if fitting else 1

    for b in (1, 2, 7, 12, 64, 256):
        for nbytes in (4, 4096, 2**20, 3 * 2**20, 5 * 2**20):
            assert codec.chunk_length(b, nbytes) == reference(b, nbytes), (b, nbytes)
    assert codec.chunk_length(12, 2**20) == 4 and codec.chunk_length(7, 2**20) == 1
    big = np.ones((3, 1000, 1280), "f4")  # 4.9 MiB per stimulus: chunks of one, over 4 MiB
    path = write(tmp_path / "big.nc", [{"tokens": big}, {"tokens": big * 2}])
    with netCDF4.Dataset(path) as ds:
        assert ds["tokens/activation"].chunking() == [1, 1000, 1280]
        np.testing.assert_array_equal(ds["tokens/activation"][3:], big * 2)
