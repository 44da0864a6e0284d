"""The activation file with and without time: schema versions, the time coordinate written by
ActivationWriter itself, and files without the ``axes`` attribute still read."""

import h5py
import numpy as np
import pytest

from neuroalign.activations import ActivationWriter, flatten, layer_activation, open_activations


def test_only_files_with_a_time_layer_are_schema_2(tmp_path):
    rng = np.random.default_rng(0)
    plain, timed = tmp_path / "plain.nc", tmp_path / "timed.nc"
    with ActivationWriter(plain) as writer:
        writer.write_batch({"a": rng.normal(size=(3, 4, 2, 2))}, ["x", "y", "z"])
    values = rng.normal(size=(3, 5, 4, 2, 2)).astype(np.float32)
    with ActivationWriter(timed, layer_time={"a": np.arange(5) * 0.5}, time_units="s") as writer:
        writer.write_batch({"a": values, "b": values[:, 0]}, ["x", "y", "z"])
    with open_activations(plain) as tree:
        assert tree.attrs["schema_version"] == 1
        assert layer_activation(tree, "a").dims == ("presentation", "channel", "y", "x")
    with open_activations(timed) as tree:
        assert tree.attrs["schema_version"] == 2
        a = layer_activation(tree, "a")
        assert a.dims == ("presentation", "time", "channel", "y", "x")
        np.testing.assert_array_equal(a.values, values)
        np.testing.assert_array_equal(a["time"].values, np.arange(5) * 0.5)
        assert layer_activation(tree, "b").dims == ("presentation", "channel", "y", "x")
        np.testing.assert_array_equal(flatten(tree, "a").values, values.reshape(3, -1))
    with pytest.raises(ValueError, match="time coordinate holds"):
        with ActivationWriter(tmp_path / "bad.nc", layer_time={"a": np.arange(4)}) as writer:
            writer.write_batch({"a": values}, ["x", "y", "z"])


def test_a_file_without_axes_attributes_reads_by_rank(tmp_path):
    path = tmp_path / "old.nc"
    values = np.random.default_rng(1).normal(size=(2, 3, 4)).astype(np.float32)
    with ActivationWriter(path) as writer:
        writer.write_batch({"blocks.0": values}, ["p", "q"])
    with h5py.File(path, "a") as f:  # as a file from before the attribute, or another writer
        del f["blocks/0/activation"].attrs["axes"]
    with open_activations(path) as tree:
        da = layer_activation(tree, "blocks.0")
        assert da.dims == ("presentation", "token", "feature")
        np.testing.assert_array_equal(da.values, values)
