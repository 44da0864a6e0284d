"""Bad activation files and a full disk: one clear error naming the file (and layer); the
final file untouched and the .partial resumable after a full disk; a look into a .partial."""

import errno
import os

import h5py
import netCDF4
import numpy as np
import pytest
import xarray as xr

from neuroalign.activations import (
    ActivationFileError,
    ActivationWriter,
    DiskFullError,
    flatten,
    layer_activation,
    open_activations,
    partial_path,
)
from neuroalign.activations import writer as writer_module

N, BATCH = 12, 4
IDS = np.array([f"img{i:02d}" for i in range(N)])


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    return {
        "encoder.blocks.3": rng.normal(size=(N, 6, 5)).astype("f4"),
        "head": rng.normal(size=(N, 9)).astype("f4"),
    }


def write(out, arrays, batches=None, **kwargs):
    with ActivationWriter(out, attrs={"model": "toy"}, **kwargs) as w:
        for s in batches if batches is not None else range(0, N, BATCH):
            w.write_batch({k: v[s : s + BATCH] for k, v in arrays.items()}, IDS[s : s + BATCH])
    return out


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# ----------------------------------------------------------------------------- not an activation file
@pytest.mark.parametrize(
    "name, content",
    [("notes.nc", b"hello, I am text\n" * 50), ("config.toml", b'[model]\nname = "x"\n'),
     ("empty.nc", b""), ("classic.nc", b"CDF\x01" + bytes(100))],
)
def test_not_netcdf4(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ActivationFileError, match="not a netCDF-4 file") as err:
        open_activations(path)
    assert str(path) in one_line(err)


def test_netcdf4_without_stimulus_id(tmp_path):
    path = tmp_path / "other.nc"
    xr.Dataset({"v": ("x", np.arange(3.0))}).to_netcdf(path, engine="netcdf4")
    with pytest.raises(ActivationFileError, match=r"not a neuroalign activation file \(no stimulus_id\)"):
        open_activations(path)
    assert isinstance(ActivationFileError("x"), ValueError)  # the CLI prints ValueErrors as one line


# ----------------------------------------------------------------------------- truncated
@pytest.mark.parametrize("fraction", [0.0005, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file(tmp_path, arrays, fraction):
    path = write(tmp_path / "acts.nc", arrays)
    size = path.stat().st_size
    os.truncate(path, max(9, int(size * fraction)))
    with pytest.raises(ActivationFileError, match="truncated/corrupt") as err:
        open_activations(path)
    assert str(path) in one_line(err) and "re-extract" in str(err.value)


# ----------------------------------------------------------------------------- corrupt chunks
def corrupt_chunk(path, group, index=1):
    """Invert 16 bytes in the middle of one stored chunk of the group's activation."""
    with h5py.File(path) as f:
        info = f[f"{group}/activation"].id.get_chunk_info(index)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)
        data = fh.read(16)
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(bytes(b ^ 0xFF for b in data))


@pytest.mark.parametrize("chunks", [None, "auto"])
def test_corrupt_layer_names_file_and_layer(tmp_path, arrays, chunks):
    path = write(tmp_path / "acts.nc", arrays)
    corrupt_chunk(path, "encoder/blocks/3")
    tree = open_activations(path, chunks=chunks)  # the structure is intact
    try:
        np.testing.assert_array_equal(layer_activation(tree, "head").values, arrays["head"])
        da = layer_activation(tree, "encoder.blocks.3")
        np.testing.assert_array_equal(da[:BATCH].values, arrays["encoder.blocks.3"][:BATCH])
        for read in (lambda: da.values, lambda: flatten(tree, "encoder.blocks.3").values):
            with pytest.raises(ActivationFileError, match="layer encoder/blocks/3 unreadable") as err:
                read()
            assert str(path) in one_line(err)
    finally:
        tree.close()


def test_corrupt_layer_in_the_analyses_readers(tmp_path, arrays):
    from neuroalign.analysis.streaming import layer_chunks
    from neuroalign.workflows import iter_layer_chunks, iter_layers

    path = write(tmp_path / "acts.nc", arrays)
    corrupt_chunk(path, "encoder/blocks/3", index=2)
    readers = {
        "iter_layers": lambda: dict(iter_layers(path)),
        "iter_layer_chunks": lambda: {k: list(v) for k, v in iter_layer_chunks(path, chunk_size=7)},
        "layer_chunks": lambda: list(layer_chunks(path, "encoder.blocks.3", chunk_size=7)),
    }
    for name, read in readers.items():
        with pytest.raises(ActivationFileError, match="layer encoder/blocks/3 unreadable") as err:
            read()
        assert str(path) in one_line(err), name
    # the intact layer still reads, with the values written
    np.testing.assert_array_equal(dict(iter_layers(path, ["head"]))["head"], arrays["head"])


# ----------------------------------------------------------------------------- full disk
def disk_full_at(monkeypatch, n_ok):
    """Make the writer's chunk write fail with ENOSPC after ``n_ok`` chunks."""
    real, calls = writer_module._store_chunk, []

    def store(dataset, where, data):
        calls.append(where)
        if len(calls) > n_ok:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(dataset, where, data)

    monkeypatch.setattr(writer_module, "_store_chunk", store)


def test_full_disk_keeps_final_file_and_partial_resumes(tmp_path, arrays, monkeypatch):
    reference = write(tmp_path / "reference.nc", arrays)
    out = tmp_path / "acts.nc"
    older = {k: v[:, ...] * 0 + 7 for k, v in arrays.items()}
    write(out, older)
    before = out.read_bytes()

    # 2 layers x 1 chunk per batch: the 4th chunk is the 2nd batch's 'head'
    disk_full_at(monkeypatch, n_ok=3)
    with pytest.raises(DiskFullError) as err:
        write(out, arrays)
    text = one_line(err)
    assert "Disk full" in text and str(partial_path(out)) in text and "resume" in text
    assert f"first {BATCH} stimuli" in text
    assert err.value.errno == errno.ENOSPC
    assert out.read_bytes() == before  # the older file is untouched
    assert partial_path(out).exists()
    monkeypatch.undo()

    write(out, arrays, batches=range(BATCH, N, BATCH), resume=True)
    assert not partial_path(out).exists()
    a, b = open_activations(out, chunks=None), open_activations(reference, chunks=None)
    try:
        np.testing.assert_array_equal(a["stimulus_id"].values, IDS)
        assert a.attrs["resumed_from"] == BATCH
        for layer, values in arrays.items():
            np.testing.assert_array_equal(layer_activation(a, layer).values, values)
            np.testing.assert_array_equal(layer_activation(a, layer).values,
                                          layer_activation(b, layer).values)
    finally:
        a.close()
        b.close()
    with h5py.File(out) as f, h5py.File(reference) as g:  # the stored bytes, chunk by chunk
        for name in ("encoder/blocks/3/activation", "head/activation"):
            ds, ref = f[name].id, g[name].id
            assert ds.get_num_chunks() == ref.get_num_chunks() == N // BATCH
            for i in range(ds.get_num_chunks()):
                where = ref.get_chunk_info(i).chunk_offset
                assert ds.read_direct_chunk(where) == ref.read_direct_chunk(where)


def test_full_disk_reported_by_hdf5_message(tmp_path, arrays, monkeypatch):
    def store(dataset, where, data):  # h5py gives HDF5's message, without an errno
        raise OSError("Can't write data (file write failed: errno = 28, error message = "
                      "'No space left on device')")

    monkeypatch.setattr(writer_module, "_store_chunk", store)
    with pytest.raises(DiskFullError, match="Disk full.*acts.nc.partial.*first 0 stimuli"):
        write(tmp_path / "acts.nc", arrays)
    assert not (tmp_path / "acts.nc").exists() and partial_path(tmp_path / "acts.nc").exists()


def test_other_write_errors_are_not_disk_full(tmp_path, arrays, monkeypatch):
    def store(dataset, where, data):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(writer_module, "_store_chunk", store)
    with pytest.raises(OSError, match="Input/output") as err:
        write(tmp_path / "acts.nc", arrays)
    assert not isinstance(err.value, DiskFullError)


# ----------------------------------------------------------------------------- a look into a .partial
WRITER = """
import sys
import numpy as np
from neuroalign.activations import ActivationWriter
data = np.load(sys.argv[2])
ids = [f"img{i:02d}" for i in range(len(data))]
with ActivationWriter(sys.argv[1], attrs={"model": "toy"}) as w:
    for s in range(0, len(data), 4):
        w.write_batch({"head": data[s : s + 4]}, ids[s : s + 4])
        if s == 4:
            print("two batches", flush=True)
            sys.stdin.readline()  # hold the file open until the parent has looked
"""


def test_open_partial_while_another_process_writes(tmp_path, arrays):
    import subprocess
    import sys

    np.save(tmp_path / "head.npy", arrays["head"])
    out = tmp_path / "acts.nc"
    part = partial_path(out)
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(out), str(tmp_path / "head.npy")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        assert child.stdout.readline().strip() == "two batches"
        if os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() != "FALSE":
            with pytest.raises(OSError):  # what a plain reader meets: HDF5's file lock
                netCDF4.Dataset(part).close()
        with pytest.raises(FileNotFoundError, match=r"open the \.partial itself"):
            open_activations(out)
        for chunks in ("auto", None):
            tree = open_activations(part, chunks=chunks)
            np.testing.assert_array_equal(tree["stimulus_id"].values, IDS[: 2 * BATCH])
            np.testing.assert_array_equal(layer_activation(tree, "head").values,
                                          arrays["head"][: 2 * BATCH])
            tree.close()
    finally:
        child.communicate("go\n", timeout=120)
    assert child.returncode == 0 and not part.exists()
    tree = open_activations(out)
    np.testing.assert_array_equal(layer_activation(tree, "head").values, arrays["head"])
    tree.close()


def test_partial_look_shows_complete_batches_only(tmp_path, arrays, monkeypatch):
    out = tmp_path / "acts.nc"
    with pytest.raises(DiskFullError):
        # the third batch is cut off after its first layer's chunk
        disk_full_at(monkeypatch, n_ok=5)
        write(out, arrays)
    monkeypatch.undo()
    part = partial_path(out)
    with h5py.File(part) as f:  # the file holds more than its complete part
        assert f["head/activation"].shape[0] == N
        assert f.attrs["presentations_complete"] == 2 * BATCH
    tree = open_activations(part, chunks=None)
    assert tree.sizes["presentation"] == 2 * BATCH
    for layer, values in arrays.items():
        np.testing.assert_array_equal(layer_activation(tree, layer).values, values[: 2 * BATCH])
    tree.close()
    write(out, arrays, batches=[2 * BATCH], resume=True)  # the look left it resumable
    tree = open_activations(out)
    for layer, values in arrays.items():
        np.testing.assert_array_equal(layer_activation(tree, layer).values, values)
    tree.close()


def test_cli_prints_disk_full_as_one_line(tmp_path, arrays, monkeypatch, capsys):
    import argparse

    from neuroalign import cli

    def run(args):  # what `neuroalign extract` meets when the disk fills up
        disk_full_at(monkeypatch, n_ok=0)
        write(tmp_path / "acts.nc", arrays)

    parser = argparse.ArgumentParser()
    parser.set_defaults(run=run)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("neuroalign: error: Disk full") and "\n" not in err
    assert "acts.nc.partial" in err and "--resume" in err

    def other(args):
        raise OSError(errno.EIO, "Input/output error")

    parser.set_defaults(run=other)
    with pytest.raises(OSError, match="Input/output"):
        cli.main([])
