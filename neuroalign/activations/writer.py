"""ActivationWriter: layer activations written batch by batch into one netCDF-4 file."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np

from neuroalign.activations import codec
from neuroalign.activations.batch import as_batch, check_batch, check_finite
from neuroalign.activations.errors import disk_full, is_disk_full
from neuroalign.activations.layout import Layout, define_layout, open_file, start_file
from neuroalign.activations.resume import reopen
from neuroalign.activations.schema import (
    COMPRESSIONS,
    DTYPES,
    NONFINITE_POLICIES,
    attr_differences,
    check_attrs,
    group_path,
    partial_path,
)

__all__ = ["ActivationWriter"]


def _store_chunk(dataset: h5py.Dataset, where: tuple[int, ...], data: bytes) -> None:
    """HDF5's direct chunk write: the encoded bytes go to disk as they are."""
    dataset.id.write_direct_chunk(where, data)


def _as_str(values) -> np.ndarray:
    """Strings read from HDF5 (str or bytes objects) as a numpy str array."""
    values = np.asarray(values, dtype=object)
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=str)


def _check_options(dtype, compression, compression_level, nonfinite, compression_threads) -> int:
    """Raise for a bad option; return the number of compression threads."""
    if dtype not in DTYPES:
        raise ValueError(f"The 'dtype' parameter must be one of {DTYPES}; got {dtype!r}.")
    if nonfinite not in NONFINITE_POLICIES:
        raise ValueError(
            f"The 'nonfinite' parameter must be one of {NONFINITE_POLICIES}; got {nonfinite!r}."
        )
    if compression not in COMPRESSIONS:
        raise ValueError(
            f"The 'compression' parameter must be one of {COMPRESSIONS}; got {compression!r}."
        )
    if not (
        isinstance(compression_level, int)
        and not isinstance(compression_level, bool)
        and 0 <= compression_level <= 9
    ):
        raise ValueError(f"'compression_level' must be an int 0-9; got {compression_level!r}.")
    threads = compression_threads
    if threads is None:
        threads = min(8, os.cpu_count() or 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(
            f"'compression_threads' must be a positive int or None; got {compression_threads!r}."
        )
    return threads


class ActivationWriter:
    """Write layer activations batch by batch into one netCDF-4 file (see
    :mod:`neuroalign.activations` for the layout).

    The file is written to ``<out>.partial`` and renamed to ``out`` when closed after a
    successful run; after an exception the ``.partial`` file stays, so an unfinished file never
    looks finished. An existing file at ``out`` is replaced only on success. The first batch
    fixes the layers, their shapes and the coordinate names; later batches must match.

    After every batch the file is flushed to disk and its root attribute
    ``presentations_complete`` set to the number of stimuli fully written, so an interrupted
    file can be continued with ``resume=True``. A full disk raises
    :class:`~neuroalign.activations.DiskFullError` naming the kept ``.partial`` file.

    The file is a netCDF-4 (HDF5) file written with h5netcdf. Activation chunks are shuffled
    and deflated by the writer itself, several at once in ``compression_threads`` threads (with
    ISA-L's deflate when python-isal is installed), and stored with HDF5's direct chunk write:
    the bytes on disk are what HDF5's own shuffle and deflate filters would produce, so every
    netCDF reader (netCDF4, MATLAB, R) decodes them.

    Args:
        out: the final file written (``.nc``).
        attrs: provenance attributes (model, checkpoint_sha256, recipe, seed, ...): strings or
            numbers; booleans become 0/1, paths strings; anything else is a TypeError.
        dtype: ``"float32"``, or ``"float16"`` precision (float32 rounded to 10 mantissa
            bits, see :mod:`neuroalign.activations`).
        compression: ``"zlib"`` (default: HDF5's byte shuffle and deflate, which every
            netCDF/HDF5 reader decodes) or None.
        compression_level: 0-9 (0 switches compression off). Level 1 is the fastest.
        nonfinite: what to do with NaN or inf activations: ``"raise"``
            (default; the batch is not written and the error names the layer and stimuli),
            ``"warn"`` or ``"ignore"`` (write them as they are).
        layer_data: extra variables per layer group, written with the first batch:
            layer -> {name: (dims, array)} (e.g. a projection matrix with dims
            ``("unit", "feature")``); dims are canonical names, suffixed in the file like the
            activation's.
        layer_attrs: extra attributes per layer group: layer -> {name: str or number}.
        layer_time: the layers that keep a time dim: layer -> its (time,) coordinate (frame
            times); their arrays are (b, time, ...), stored as
            ``activation(presentation, time, ...)`` with ``time`` a coordinate variable of the
            group (schema 2). Set before the first batch.
        time_units: the time coordinate's ``units`` attribute (``"s"``).
        resume: continue ``<out>.partial`` if it exists (after the last complete batch; its
            attributes must equal ``attrs``, see :meth:`resume_check`), else start afresh.
        compression_threads: threads compressing chunks; None: one per CPU core (at most 8).

    Example::

        with ActivationWriter("acts.nc", attrs={"model": "resnet18"}) as writer:
            for ids, acts in batches:  # acts: {"layer1": (b, 64, 8, 8) array, ...}
                writer.write_batch(acts, ids, coords={"label": labels})
    """

    def __init__(
        self,
        out: str | Path,
        *,
        attrs: Mapping | None = None,
        dtype: str = "float32",
        compression: str | None = "zlib",
        compression_level: int = 1,
        nonfinite: str = "raise",
        layer_data: Mapping[str, Mapping[str, tuple]] | None = None,
        layer_attrs: Mapping[str, Mapping] | None = None,
        resume: bool = False,
        compression_threads: int | None = None,
        layer_time: Mapping[str, np.ndarray] | None = None,
        time_units: str = "s",
    ):
        threads = _check_options(dtype, compression, compression_level, nonfinite,
                                 compression_threads)
        self.out = Path(out)
        self.partial_path = partial_path(self.out)
        if not self.out.parent.is_dir():
            raise FileNotFoundError(f"Output folder {self.out.parent} does not exist.")
        self.dtype = dtype
        self.compression = compression if compression_level > 0 else None
        self.compression_level = compression_level
        self.nonfinite = nonfinite
        self.layer_data = {k: dict(v) for k, v in (layer_data or {}).items()}
        self.layer_attrs = {k: check_attrs(v) for k, v in (layer_attrs or {}).items()}
        self.layer_time = {k: np.asarray(v) for k, v in (layer_time or {}).items()}
        self.time_units = str(time_units)
        self.attrs = check_attrs(attrs or {})
        self.n_written = 0
        self.resumed = False
        self._layout = Layout()
        self._seen_ids: set[str] = set()
        self._pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="neuroalign-deflate")
            if threads > 1 and self.compression
            else None
        )
        self._file = None
        try:
            if resume and self.partial_path.exists():
                self._file, self._layout, self.n_written = reopen(
                    self.partial_path, self.resume_check
                )
                self._seen_ids = set(self.stimulus_id)
                self.resumed = True
            else:
                self._file = open_file(self.partial_path, "w")
                start_file(self._file, self.attrs)
        except BaseException as err:
            self.abort()
            if is_disk_full(err):
                raise disk_full(self.out, self.partial_path, 0, err) from err
            raise

    def resume_check(self, stored: Mapping) -> None:
        """Raise ValueError when the given attrs differ from those of the unfinished file."""
        differ = attr_differences(self.attrs, stored)
        if differ:
            raise ValueError(
                f"Cannot resume {self.partial_path}: it was written with other settings ("
                + "; ".join(differ)
                + "). Run with --overwrite (overwrite=True) to start afresh."
            )

    @property
    def stimulus_id(self) -> np.ndarray:
        """(n_written,) the ids written so far, in order."""
        if self._file is None or self.n_written == 0:
            return np.array([], dtype=str)
        return _as_str(self._file["stimulus_id"][: self.n_written])

    @property
    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        """Layer -> per-stimulus shape, once known (first batch, or the resumed file)."""
        return dict(self._layout.layers)

    def stored_layer_data(self, layer: str, name: str) -> np.ndarray | None:
        """A variable of a layer's group in the (resumed) file, or None if absent."""
        if self._file is None or layer not in self._layout.layers:
            return None
        group = self._file[group_path(layer)]
        return np.asarray(group.variables[name][...]) if name in group.variables else None

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> ActivationWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._file is not None:
            f, self._file = self._file, None
            f.close()

    def abort(self) -> None:
        """Close the file and leave it as ``<out>.partial``."""
        self._shutdown()

    def close(self) -> Path:
        """Finish the file: close it and rename ``<out>.partial`` to ``out``.

        Returns:
            The final path.
        """
        if self._file is None:
            if self.out.exists() and not self.partial_path.exists():
                return self.out
            raise ValueError(f"The writer was aborted; the unfinished file is {self.partial_path}.")
        if self.n_written == 0:
            self.abort()
            raise ValueError(
                f"No batch was written; the unfinished file stays at {self.partial_path}."
            )
        try:
            self._shutdown()
        except OSError as err:
            if is_disk_full(err):
                raise disk_full(self.out, self.partial_path, self.n_written, err) from err
            raise
        os.replace(self.partial_path, self.out)
        return self.out

    # ------------------------------------------------------------------ writing
    def write_batch(
        self,
        activations: Mapping[str, np.ndarray],
        stimulus_id: Sequence[str],
        coords: Mapping[str, Sequence] | None = None,
    ) -> None:
        """Append one batch of stimuli.

        Safe to call from one background thread, as long as only one thread uses the writer:
        compression runs without the GIL.

        Args:
            activations: layer module path -> array of shape (b, ...) with 2, 3 or 4 dims
                (b, feature), (b, token, feature) or (b, channel, y, x), with a time dim
                after b for the layers of ``layer_time``; any float dtype.
            stimulus_id: (b,) ids of the stimuli, unique over the whole file.
            coords: per-stimulus coordinates, name -> (b,) strings, numbers or booleans.

        Raises:
            DiskFullError: the disk filled up; the ``.partial`` file keeps every earlier batch.
        """
        if self._file is None:
            raise ValueError(f"The writer for {self.out} is closed.")
        ids, arrays, coord_arrays = as_batch(activations, stimulus_id, coords)
        del activations  # each layer is freed once written (if the caller keeps no copy)
        try:
            self._append(ids, arrays, coord_arrays)
        except OSError as err:
            if is_disk_full(err):
                raise disk_full(self.out, self.partial_path, self.n_written, err) from err
            raise

    def _append(self, ids: np.ndarray, arrays: dict, coords: dict) -> None:
        file = self._file
        assert file is not None  # append() raises when the writer is closed
        if not self._layout.layers:
            self._layout = define_layout(
                file, arrays, coords, layer_data=self.layer_data,
                layer_attrs=self.layer_attrs, dtype=self.dtype,
                compression_level=self.compression_level if self.compression else None,
                layer_time=self.layer_time, time_units=self.time_units,
            )
        check_batch(self._layout, self._seen_ids, arrays, ids, coords)
        for layer, values in arrays.items():
            check_finite(self.nonfinite, layer, values, ids)

        start, stop = self.n_written, self.n_written + len(ids)
        file.resize_dimension("presentation", stop)
        # activations first, ids last: 'presentations_complete' marks what is whole
        self._write_activations(arrays, start)
        for name, values in coords.items():
            if values.dtype.kind == "b":
                values = values.astype("i1")
            file[name][start:stop] = values
        file["stimulus_id"][start:stop] = ids.astype(object)
        file.attrs["presentations_complete"] = stop
        file.flush()
        file._h5file.flush()  # h5netcdf's flush writes no HDF5 buffers to disk
        self.n_written = stop
        self._seen_ids.update(ids)

    def _write_activations(self, arrays: dict[str, np.ndarray], start: int) -> None:
        """Encode every chunk of the batch (in parallel) and store them in order.

        The arrays are popped from ``arrays``, so each is freed once its chunks are encoded.
        """
        level = self.compression_level if self.compression else None
        # (dataset, chunk offset, encoded bytes or a future of them)
        jobs: list[tuple[h5py.Dataset, tuple[int, ...], bytes | Future[bytes]]] = []
        encoded: bytes | Future[bytes]
        for layer in list(arrays):
            values = arrays.pop(layer).astype(np.float32, copy=False)
            if self.dtype == "float16":
                values = codec.bitround(values)
            dataset = self._layout.datasets[layer]
            rows = dataset.chunks[0]
            if start % rows:  # resumed with another batch size: HDF5 encodes it
                dataset[start : start + len(values)] = values
                continue
            for offset in range(0, len(values), rows):
                piece = values[offset : offset + rows]
                if len(piece) < rows:  # the last chunk: HDF5 stores edge chunks whole
                    piece = np.concatenate(
                        [piece, np.zeros((rows - len(piece), *piece.shape[1:]), np.float32)]
                    )
                where = (start + offset,) + (0,) * (values.ndim - 1)
                if self._pool is not None:
                    encoded = self._pool.submit(codec.encode_chunk, piece, level)
                else:
                    encoded = codec.encode_chunk(piece, level)
                jobs.append((dataset, where, encoded))
            del values, piece
        jobs.reverse()
        while jobs:  # in order, letting go of each chunk's bytes once written
            dataset, where, encoded = jobs.pop()
            data = encoded if isinstance(encoded, bytes) else encoded.result()
            _store_chunk(dataset, where, data)
            del data, encoded
