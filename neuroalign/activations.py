"""The activation file: one netCDF-4 file, one group per layer, read as an xarray DataTree.

Layout (schema version 1), the contract between extraction and the analyses:

- root group: unlimited dimension ``presentation``; coordinate variables ``stimulus_id`` (str)
  and any per-stimulus coordinates (``label``, ``category``, ``image_path``, ...); provenance
  attributes (scalars and strings only), ``schema_version``, ``created`` (ISO 8601, UTC), the
  library versions, and ``layers``: the module paths of the layers, comma-joined, in file order.
- one group per layer, its path the module path with ``.`` replaced by ``/``
  (``encoder.blocks.3`` -> ``encoder/blocks/3``), with the attribute ``layer`` (the module
  path) and the variable ``activation`` whose dims follow the layer's output:
  4-D -> ``(presentation, channel, y, x)``, 3-D -> ``(presentation, token, feature)``,
  2-D -> ``(presentation, feature)``; zlib-compressed (with HDF5's byte shuffle), chunked
  by batch. The variable's ``axes`` attribute names these canonical dims.
  A layer group may hold further variables (a projection matrix ``projection`` with dims
  ``(unit, feature)``, PCA's ``mean`` ``(unit,)``), written by the extraction options.
- ``presentations_complete`` (root attribute) counts the stimuli fully written; the writer
  flushes the file after every batch, so an interrupted ``.partial`` file can be resumed.

Precision: netCDF-4 has no 16-bit float type, so ``dtype="float16"`` stores float32 values
rounded to float16's precision (10 mantissa bits, netCDF's BitRound quantisation: relative
error <= 2**-11, the attribute ``_QuantizeBitRoundNumberOfSignificantBits`` records it). The
zeroed bits compress away, so the file is about as small as a float16 one, every netCDF tool
reads it as plain float32, and values beyond float16's range (65504) stay finite.

One exception to the dim names: xarray requires a group's dims to match the sizes of
same-named dims in its ancestor groups. When a layer lies inside another layer (``features``
and ``features.0``) and a dim of the same name has a different size, the inner layer's dim
gets a numeric suffix in the file (``channel_1``); :func:`layer_activation` and
:func:`flatten` rename it back, and ``axes`` always holds the canonical names.

Reading needs no PyTorch: numpy, netCDF4 and xarray only.
"""

from __future__ import annotations

import difflib
import math
import os
import warnings
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import h5netcdf
import h5py
import numpy as np
import pandas as pd
import xarray as xr

from neuroalign._version import __version__

SCHEMA_VERSION = 1
PARTIAL_SUFFIX = ".partial"
CANONICAL_DIMS = {4: ("channel", "y", "x"), 3: ("token", "feature"), 2: ("feature",)}
DTYPES = ("float32", "float16")
NONFINITE_POLICIES = ("raise", "warn", "ignore")
COMPRESSIONS = ("zlib", None)
FLOAT16_MANTISSA_BITS = 10  # float16's explicit mantissa bits
MAX_CHUNK_BYTES = 4 * 2**20  # a batch larger than this is split into equal smaller chunks,
# so a reader never inflates more than 4 MiB to reach one stimulus
COORD_CHUNK = 4096  # presentations per chunk of a coordinate variable
_RESERVED_ATTRS = {
    "layers",
    "coordinates",
    "schema_version",
    "created",
    "neuroalign_version",
    "xarray_version",
    "h5netcdf_version",
    "hdf5_version",
    "presentations_complete",
    "resumed_from",
}
# attributes that may differ when an interrupted file is resumed
_VOLATILE_ATTRS = {"device", "torch_version"}
_RESERVED_COORDS = {"presentation", "stimulus_id"}


def group_path(layer: str) -> str:
    """The netCDF group / DataTree path of a layer: ``encoder.blocks.3`` -> ``encoder/blocks/3``."""
    return layer.replace(".", "/")


def partial_path(path: str | Path) -> Path:
    """Where an unfinished file lives until it is complete: ``<path>.partial``."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


# --------------------------------------------------------------------------- writing


def _check_attrs(attrs: Mapping) -> dict:
    """Provenance attributes as netCDF can store them: str, int or float (bool -> int)."""
    out = {}
    for key, value in attrs.items():
        if not isinstance(key, str) or not key or "/" in key:
            raise ValueError(f"Attribute names must be non-empty strings without '/'; got {key!r}.")
        if key in _RESERVED_ATTRS:
            raise ValueError(
                f"Attribute {key!r} is set by the writer itself; reserved names: "
                f"{sorted(_RESERVED_ATTRS)}."
            )
        if isinstance(value, (str, Path)):
            value = str(value)  # a plain str: HDF5 cannot store numpy's str_
        elif isinstance(value, (bool, np.bool_)):
            value = int(value)
        elif isinstance(value, np.generic) and value.ndim == 0 and value.dtype.kind in "iuf":
            value = value.item()
        if not isinstance(value, (str, int, float)):
            raise TypeError(
                f"Attribute {key!r} must be a string or a number (netCDF stores only scalars "
                f"and strings); got {type(value).__name__} {value!r}. Convert it first, "
                "e.g. with str() or json.dumps(), or leave it out."
            )
        out[key] = value
    return out


def _check_layer_names(layers: Sequence[str], coord_names: Sequence[str]) -> None:
    for layer in layers:
        if not isinstance(layer, str) or not layer:
            raise ValueError(f"Layer names must be non-empty module paths; got {layer!r}.")
        parts = layer.split(".")
        if any(not p for p in parts) or "/" in layer or "," in layer:
            raise ValueError(
                f"Layer name {layer!r} is not a module path: it must be dot-separated names "
                "without empty parts, '/' or ','."
            )
        if parts[0] in coord_names or parts[0] == "presentation":
            raise ValueError(
                f"Layer {layer!r} would clash with the root coordinate {parts[0]!r}; "
                "rename the coordinate."
            )
        parent = layer.rpartition(".")[0]
        if parts[-1] == "activation" and parent in layers:
            raise ValueError(
                f"Layer {layer!r} would clash with the 'activation' variable of layer {parent!r}."
            )


def _file_dim_names(
    dims: Mapping[str, Sequence[tuple[str, int]]],
) -> dict[str, dict[str, str]]:
    """Per-layer dim names in the file: canonical, suffixed where an ancestor layer differs.

    Args:
        dims: layer -> its (canonical name, size) pairs (activation dims, then the dims of
            any other variable of the layer's group; one size per name within a layer).

    Returns:
        layer -> {canonical name: name in the file}.
    """
    names: dict[str, dict[str, str]] = {}
    sizes: dict[str, dict[str, int]] = {}  # layer -> {file name: size}
    for layer in sorted(dims, key=lambda name: name.count(".")):  # ancestors first
        taken: dict[str, int] = {}
        for other in names:
            if layer.startswith(other + "."):
                taken.update(sizes[other])
        names[layer], sizes[layer] = {}, {}
        for base, size in dims[layer]:
            if base in names[layer]:
                continue
            name, k = base, 0
            while name in taken and taken[name] != size:
                k += 1
                name = f"{base}_{k}"
            names[layer][base] = name
            sizes[layer][name] = size
    return names


def _chunk_length(b: int, per_stimulus_bytes: int) -> int:
    """Presentations per chunk: the largest divisor of the batch size whose chunk stays under
    MAX_CHUNK_BYTES (a divisor, so every batch covers whole chunks)."""
    for chunk in range(b, 0, -1):
        if b % chunk == 0 and chunk * per_stimulus_bytes <= MAX_CHUNK_BYTES:
            return chunk
    return 1


def _coord_values(name: str, values, n: int) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1 or len(values) != n:
        raise ValueError(
            f"Coordinate {name!r} must hold one value per stimulus ({n}); got shape {values.shape}."
        )
    if values.dtype.kind in "OUS":
        return values.astype(str).astype(object)
    if values.dtype.kind not in "biuf":
        raise TypeError(
            f"Coordinate {name!r} must hold strings, numbers or booleans; got dtype {values.dtype}."
        )
    return values.astype(np.float32) if values.dtype == np.float16 else values


def _open_file(path: Path, mode: str) -> h5netcdf.File:
    # no HDF5 chunk cache: every chunk is written whole, once, so a cache gains nothing
    return h5netcdf.File(path, mode, rdcc_nbytes=0)


def _load_deflate():
    """The fastest zlib-format deflate at hand: ISA-L's (python-isal, ~6x zlib's speed at
    level 1, same stream format, so every HDF5 reader inflates it), else the standard zlib."""
    try:
        from isal import isal_zlib

        return isal_zlib.compress
    except ImportError:  # python-isal has no wheel for this platform
        return zlib.compress


_DEFLATE = _load_deflate()


def bitround(values: np.ndarray, mantissa_bits: int = FLOAT16_MANTISSA_BITS) -> np.ndarray:
    """float32 values rounded to ``mantissa_bits`` explicit mantissa bits (of 23).

    netCDF-C's BitRound quantisation: add half of the dropped bits' range, then zero them.
    """
    drop = 23 - mantissa_bits
    bits = np.array(values, dtype=np.float32, copy=True).view(np.uint32)
    bits += np.uint32(1 << (drop - 1))
    bits &= np.uint32((0xFFFFFFFF << drop) & 0xFFFFFFFF)
    return bits.view(np.float32)


def _encode_chunk(chunk: np.ndarray, level: int | None) -> bytes:
    """A chunk as HDF5 stores it: raw bytes, or for deflate HDF5's byte shuffle (all first
    bytes, then all second bytes, ...) followed by a zlib stream."""
    raw = np.ascontiguousarray(chunk, dtype=np.float32)
    if level is None:
        return raw.tobytes()
    shuffled = raw.view(np.uint8).reshape(-1, raw.itemsize).T.copy()
    return _DEFLATE(shuffled, level)


def attr_differences(given: Mapping, stored: Mapping) -> list[str]:
    """``"key: file <old>, now <new>"`` for every given attribute whose stored value differs.

    Attributes that may change between runs of one extraction (``device``, ``torch_version``)
    are not compared.
    """
    differ = []
    for key, value in _check_attrs(given).items():
        if key in _VOLATILE_ATTRS:
            continue
        old = stored.get(key)
        if isinstance(old, np.generic):
            old = old.item()
        if old != value:
            differ.append(f"{key}: file {old!r}, now {value!r}")
    return differ


def _as_str(values) -> np.ndarray:
    """Strings read from HDF5 (str or bytes objects) as a numpy str array."""
    values = np.asarray(values, dtype=object)
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=str)


class ActivationWriter:
    """Write layer activations batch by batch into one netCDF-4 file (see the module docstring).

    The file is written to ``<path>.partial`` and renamed to ``path`` when closed after a
    successful run; after an exception the ``.partial`` file stays, so an unfinished file never
    looks finished. An existing file at ``path`` is replaced only on success. The first batch
    fixes the layers, their shapes and the coordinate names; later batches must match.

    After every batch the file is flushed to disk and its root attribute
    ``presentations_complete`` set to the number of stimuli fully written, so an interrupted
    file can be continued with ``resume=True``.

    The file is a netCDF-4 (HDF5) file written with h5netcdf. Activation chunks are shuffled
    and deflated by the writer itself, several at once in ``threads`` threads (with ISA-L's
    deflate when python-isal is installed), and stored with HDF5's direct chunk write: the
    bytes on disk are what HDF5's own shuffle and deflate filters would produce, so every
    netCDF reader (netCDF4, MATLAB, R) decodes them.

    Args:
        path: the final file name (``.nc``).
        attrs: provenance attributes (model, checkpoint_sha256, recipe, seed, ...): strings or
            numbers; booleans become 0/1, paths strings; anything else is a TypeError.
        dtype: ``"float32"``, or ``"float16"`` precision (float32 rounded to 10 mantissa
            bits, see the module docstring).
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
        resume: continue ``<path>.partial`` if it exists (after the last complete batch; its
            attributes must equal ``attrs``, see :meth:`resume_check`), else start afresh.
        threads: threads compressing chunks; None: one per CPU core (at most 8).

    Example::

        with ActivationWriter("acts.nc", attrs={"model": "resnet18"}) as writer:
            for ids, acts in batches:  # acts: {"layer1": (b, 64, 8, 8) array, ...}
                writer.write_batch(acts, ids, coords={"label": labels})
    """

    def __init__(
        self,
        path: str | Path,
        *,
        attrs: Mapping | None = None,
        dtype: str = "float32",
        compression: str | None = "zlib",
        compression_level: int = 1,
        nonfinite: str = "raise",
        layer_data: Mapping[str, Mapping[str, tuple]] | None = None,
        layer_attrs: Mapping[str, Mapping] | None = None,
        resume: bool = False,
        threads: int | None = None,
    ):
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
            raise ValueError(
                f"'compression_level' must be an int 0-9; got {compression_level!r}."
            )
        if threads is None:
            threads = min(8, os.cpu_count() or 1)
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"'threads' must be a positive int or None; got {threads!r}.")
        self.path = Path(path)
        self.partial_path = partial_path(self.path)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"Output folder {self.path.parent} does not exist.")
        self.dtype = dtype
        self.compression = compression if compression_level > 0 else None
        self.compression_level = compression_level
        self.nonfinite = nonfinite
        self.layer_data = {k: dict(v) for k, v in (layer_data or {}).items()}
        self.layer_attrs = {k: _check_attrs(v) for k, v in (layer_attrs or {}).items()}
        self.attrs = _check_attrs(attrs or {})
        self.n_written = 0
        self.resumed = False
        self._layers: dict[str, tuple[int, ...]] = {}  # layer -> per-stimulus shape
        self._coord_names: list[str] = []
        self._seen_ids: set[str] = set()
        self._datasets: dict[str, h5py.Dataset] = {}  # layer -> its activation's HDF5 dataset
        self._pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="neuroalign-deflate")
            if threads > 1 and self.compression
            else None
        )
        self._file = None
        if resume and self.partial_path.exists():
            self._reopen()
            return
        self._file = _open_file(self.partial_path, "w")
        try:
            self._start_file()
        except BaseException:
            self.abort()
            raise

    def _start_file(self) -> None:
        self._file.attrs.update(
            {
                **self.attrs,
                "schema_version": SCHEMA_VERSION,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "neuroalign_version": __version__,
                "xarray_version": xr.__version__,
                "h5netcdf_version": h5netcdf.__version__,
                "hdf5_version": h5py.version.hdf5_version,
                "presentations_complete": 0,
            }
        )
        self._file.dimensions["presentation"] = None
        self._file.create_variable(
            "stimulus_id", ("presentation",), h5py.string_dtype(), chunks=(COORD_CHUNK,)
        )

    # ------------------------------------------------------------------ resuming
    def _reopen(self) -> None:
        """Open ``<path>.partial`` to append after its last complete batch."""
        where = self.partial_path
        try:
            f = _open_file(where, "a")
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(
                f"Cannot resume: the unfinished file {where} cannot be opened ({err}); it was "
                "probably cut off in the middle of a write. Delete it and run without resume."
            ) from err
        self._file = f
        try:
            stored = {k: f.attrs[k] for k in f.attrs}
            stored = {k: v.decode() if isinstance(v, bytes) else v for k, v in stored.items()}
            if stored.get("schema_version") != SCHEMA_VERSION or "presentations_complete" not in stored:
                raise ValueError(
                    f"Cannot resume {where}: not an unfinished neuroalign activation file of "
                    f"schema {SCHEMA_VERSION}."
                )
            self.resume_check(stored)
            self.n_written = int(stored["presentations_complete"])
            layers = [name for name in str(stored.get("layers", "")).split(",") if name]
            for layer in layers:
                var = f[group_path(layer)]["activation"]
                self._layers[layer] = tuple(var.shape[1:])
                self._datasets[layer] = var._h5ds
            coords = str(stored.get("coordinates", "stimulus_id")).split()
            self._coord_names = [c for c in coords if c != "stimulus_id"]
            # drop what an interrupted batch left beyond the last complete one
            f.resize_dimension("presentation", self.n_written)
            self._seen_ids = set(self.stimulus_ids)
            f.attrs["resumed_from"] = self.n_written
        except Exception:
            self.abort()
            raise
        self.resumed = True

    def resume_check(self, stored: Mapping) -> None:
        """Raise ValueError when the given attrs differ from those of the unfinished file."""
        differ = attr_differences(self.attrs, stored)
        if differ:
            raise ValueError(
                f"Cannot resume {self.partial_path}: it was written with other settings ("
                + "; ".join(differ)
                + "). Delete it or run without resume."
            )

    @property
    def stimulus_ids(self) -> np.ndarray:
        """(n_written,) the ids written so far, in order."""
        if self._file is None or self.n_written == 0:
            return np.array([], dtype=str)
        return _as_str(self._file["stimulus_id"][: self.n_written])

    @property
    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        """Layer -> per-stimulus shape, once known (first batch, or the resumed file)."""
        return dict(self._layers)

    def stored_layer_data(self, layer: str, name: str) -> np.ndarray | None:
        """A variable of a layer's group in the (resumed) file, or None if absent."""
        if self._file is None or layer not in self._layers:
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
            self._file.close()
            self._file = None

    def abort(self) -> None:
        """Close the file and leave it as ``<path>.partial``."""
        self._shutdown()

    def close(self) -> Path:
        """Finish the file: close it and rename ``<path>.partial`` to ``path``.

        Returns:
            The final path.
        """
        if self._file is None:
            if self.path.exists() and not self.partial_path.exists():
                return self.path
            raise ValueError(f"The writer was aborted; the unfinished file is {self.partial_path}.")
        if self.n_written == 0:
            self.abort()
            raise ValueError(
                f"No batch was written; the unfinished file stays at {self.partial_path}."
            )
        self._shutdown()
        os.replace(self.partial_path, self.path)
        return self.path

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
                (b, feature), (b, token, feature) or (b, channel, y, x); any float dtype.
            stimulus_id: (b,) ids of the stimuli, unique over the whole file.
            coords: per-stimulus coordinates, name -> (b,) strings, numbers or booleans.
        """
        if self._file is None:
            raise ValueError(f"The writer for {self.path} is closed.")
        ids = np.asarray(stimulus_id).astype(str)
        if ids.ndim != 1 or len(ids) == 0:
            raise ValueError(
                f"'stimulus_id' must be a non-empty 1-D sequence; got shape {ids.shape}."
            )
        b = len(ids)
        coords = {k: _coord_values(k, v, b) for k, v in (coords or {}).items()}
        arrays = {}
        for layer, values in activations.items():
            values = np.asarray(values)
            if values.ndim not in CANONICAL_DIMS or values.shape[0] != b:
                raise ValueError(
                    f"Layer {layer!r}: activations must have shape (b, ...) with 2, 3 or 4 dims "
                    f"and b = {b} stimuli; got {values.shape}."
                )
            if values.dtype.kind != "f":
                raise TypeError(f"Layer {layer!r}: activations must be floats; got {values.dtype}.")
            arrays[layer] = values
        if not arrays:
            raise ValueError("'activations' holds no layer.")
        activations = None  # each layer is freed once written (if the caller keeps no copy)
        if not self._layers:
            self._define(arrays, coords)
        self._check_batch(arrays, ids, coords)
        for layer, values in arrays.items():
            self._check_finite(layer, values, ids)

        start, stop = self.n_written, self.n_written + b
        self._file.resize_dimension("presentation", stop)
        # activations first, ids last: 'presentations_complete' marks what is whole
        self._write_activations(arrays, start)
        for name, values in coords.items():
            if values.dtype.kind == "b":
                values = values.astype("i1")
            self._file[name][start:stop] = values
        self._file["stimulus_id"][start:stop] = ids.astype(object)
        self._file.attrs["presentations_complete"] = stop
        self._file.flush()
        self._file._h5file.flush()  # h5netcdf's flush writes no HDF5 buffers to disk
        self.n_written = stop
        self._seen_ids.update(ids)

    def _write_activations(self, arrays: dict[str, np.ndarray], start: int) -> None:
        """Encode every chunk of the batch (in parallel) and store them in order.

        The arrays are popped from ``arrays``, so each is freed once its chunks are encoded.
        """
        level = self.compression_level if self.compression else None
        jobs = []  # (dataset, chunk offset, encoded bytes or a future of them)
        for layer in list(arrays):
            values = arrays.pop(layer).astype(np.float32, copy=False)
            if self.dtype == "float16":
                values = bitround(values)
            dataset = self._datasets[layer]
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
                    encoded = self._pool.submit(_encode_chunk, piece, level)
                else:
                    encoded = _encode_chunk(piece, level)
                jobs.append((dataset, where, encoded))
            del values, piece
        jobs.reverse()
        while jobs:  # in order, letting go of each chunk's bytes once written
            dataset, where, encoded = jobs.pop()
            data = encoded if isinstance(encoded, bytes) else encoded.result()
            dataset.id.write_direct_chunk(where, data)
            del data, encoded

    def _define(self, arrays: Mapping[str, np.ndarray], coords: Mapping[str, np.ndarray]) -> None:
        """Create the coordinate variables and layer groups from the first batch."""
        for name in coords:
            if name in _RESERVED_COORDS or not name or "/" in name:
                raise ValueError(
                    f"Coordinate name {name!r} is not allowed (reserved: "
                    f"{sorted(_RESERVED_COORDS)}; no '/')."
                )
        _check_layer_names(list(arrays), list(coords))
        unknown = sorted((set(self.layer_data) | set(self.layer_attrs)) - set(arrays))
        if unknown:
            raise ValueError(f"'layer_data' / 'layer_attrs' name layers not written: {unknown}.")
        for name, values in coords.items():
            if values.dtype.kind == "O":
                dtype = h5py.string_dtype()
            elif values.dtype.kind == "b":
                dtype = np.dtype("i1")
            else:
                dtype = values.dtype
            var = self._file.create_variable(
                name, ("presentation",), dtype, chunks=(COORD_CHUNK,)
            )
            if values.dtype.kind == "b":
                var.attrs["dtype"] = "bool"  # xarray decodes this back to bool
        self._coord_names = list(coords)
        shapes = {layer: values.shape for layer, values in arrays.items()}
        dims = {}
        for layer, shape in shapes.items():
            dims[layer] = list(zip(CANONICAL_DIMS[len(shape)], shape[1:], strict=True))
            for name, (var_dims, values) in self.layer_data.get(layer, {}).items():
                values = np.asarray(values)
                if len(var_dims) != values.ndim:
                    raise ValueError(
                        f"Layer {layer!r} variable {name!r}: dims {var_dims} do not match its "
                        f"shape {values.shape}."
                    )
                dims[layer] += list(zip(var_dims, values.shape, strict=True))
        file_dims = _file_dim_names(dims)
        b = next(iter(shapes.values()))[0]
        compression = (
            {"compression": "gzip", "compression_opts": self.compression_level, "shuffle": True}
            if self.compression
            else {}
        )
        for layer, shape in shapes.items():
            group = self._require_group(group_path(layer))
            group.attrs.update({**self.layer_attrs.get(layer, {}), "layer": layer})
            names = file_dims[layer]
            for base, size in dims[layer]:
                if names[base] not in group.dimensions:
                    group.dimensions[names[base]] = size
            canonical = CANONICAL_DIMS[len(shape)]
            var = group.create_variable(
                "activation",
                ("presentation", *(names[d] for d in canonical)),
                np.float32,
                chunks=(_chunk_length(b, 4 * math.prod(shape[1:])), *shape[1:]),
                **compression,
            )
            var.attrs["axes"] = " ".join(("presentation", *canonical))
            if self.dtype == "float16":
                var.attrs["_QuantizeBitRoundNumberOfSignificantBits"] = np.int32(
                    FLOAT16_MANTISSA_BITS
                )
            for name, (var_dims, values) in self.layer_data.get(layer, {}).items():
                values = np.asarray(values)
                extra = group.create_variable(
                    name,
                    tuple(names[d] for d in var_dims),
                    values.dtype,
                    data=values,
                    **(compression if values.size else {}),
                )
                extra.attrs["axes"] = " ".join(var_dims)
            self._layers[layer] = tuple(shape[1:])
            self._datasets[layer] = var._h5ds
        self._file.attrs["layers"] = ",".join(self._layers)
        self._file.attrs["coordinates"] = " ".join(["stimulus_id", *self._coord_names])

    def _require_group(self, path: str):
        group = self._file
        for part in path.split("/"):
            group = group.groups[part] if part in group.groups else group.create_group(part)
        return group

    def _check_batch(self, arrays, ids: np.ndarray, coords) -> None:
        missing = [k for k in self._layers if k not in arrays]
        extra = [k for k in arrays if k not in self._layers]
        if missing or extra:
            raise ValueError(
                f"Every batch must hold the same layers as the first; missing {missing}, "
                f"unexpected {extra}."
            )
        for layer, values in arrays.items():
            if values.shape[1:] != self._layers[layer]:
                raise ValueError(
                    f"Layer {layer!r}: per-stimulus shape {values.shape[1:]} differs from the "
                    f"first batch's {self._layers[layer]}."
                )
        if sorted(coords) != sorted(self._coord_names):
            raise ValueError(
                f"Every batch must give the same coordinates as the first "
                f"({self._coord_names}); got {list(coords)}."
            )
        if len(set(ids)) != len(ids) or not self._seen_ids.isdisjoint(ids):
            uniq, counts = np.unique(ids, return_counts=True)
            repeated = sorted(set(uniq[counts > 1]) | (self._seen_ids & set(ids)))
            raise ValueError(f"Stimulus ids must be unique in the file; repeated: {repeated[:10]}.")

    def _check_finite(self, layer: str, values: np.ndarray, ids: np.ndarray) -> None:
        if self.nonfinite == "ignore":
            return
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if bad.any():
            message = (
                f"Layer {layer!r} has NaN or inf values for {int(bad.sum())} stimuli, e.g. "
                f"{list(ids[bad][:5])}."
            )
            if self.nonfinite == "raise":
                raise ValueError(
                    message + " Nothing of this batch was written; pass nonfinite='warn' to "
                    "write them anyway."
                )
            warnings.warn(message, RuntimeWarning, stacklevel=3)


# --------------------------------------------------------------------------- reading


def open_activations(path: str | Path, chunks: str | dict | None = "auto") -> xr.DataTree:
    """Open an activation file lazily as a DataTree.

    Args:
        path: the ``.nc`` file written by :class:`ActivationWriter`.
        chunks: dask chunks (``"auto"`` keeps the file's batch chunks as a basis); None reads
            lazily without dask.

    Returns:
        The tree; its root holds the presentation coordinates (``stimulus_id``, ...) and every
        layer node's ``activation`` carries the same presentation coordinates.
    """
    path = Path(path)
    if not path.is_file():
        partial = partial_path(path)
        hint = (
            f" Only the unfinished {partial} exists: the extraction did not complete."
            if partial.exists()
            else ""
        )
        raise FileNotFoundError(f"Activation file {path} does not exist.{hint}")
    tree = xr.open_datatree(path, engine="netcdf4", chunks=chunks)
    if "layers" not in tree.attrs:
        tree.close()
        raise ValueError(
            f"{path} is not a neuroalign activation file: its root has no 'layers' attribute."
        )
    root_coords = tree.to_dataset(inherit=False).coords.to_dataset().compute().coords
    tree.dataset = tree.to_dataset(inherit=False).assign_coords(root_coords)  # small: load
    for layer in layer_names(tree):
        node = tree[group_path(layer)]
        node.dataset = node.to_dataset(inherit=False).assign_coords(root_coords)
    return tree


def layer_names(tree: xr.DataTree) -> list[str]:
    """The layers' module paths, in file order."""
    layers = tree.attrs.get("layers", "")
    return [name for name in str(layers).split(",") if name]


def _resolve_layer(tree: xr.DataTree, layer: str) -> str:
    names = layer_names(tree)
    by_group = {group_path(name): name for name in names}
    key = str(layer).strip("/")
    if key in names:
        return key
    if key in by_group:
        return by_group[key]
    close = difflib.get_close_matches(key, names + list(by_group), n=5, cutoff=0.5)
    close = list(dict.fromkeys(by_group.get(c, c) for c in close))
    hint = f" Did you mean {close}?" if close else ""
    raise ValueError(
        f"No layer {layer!r} in the activation file.{hint} It holds {len(names)} layers: "
        f"{names[:20]}{' ...' if len(names) > 20 else ''}."
    )


def layer_activation(tree: xr.DataTree, layer: str) -> xr.DataArray:
    """One layer's activations with canonical dim names and the presentation coordinates.

    Args:
        tree: from :func:`open_activations`.
        layer: module path (``encoder.blocks.3``) or group path (``encoder/blocks/3``).

    Returns:
        (presentation, channel, y, x), (presentation, token, feature) or
        (presentation, feature); lazy when the tree is. attrs hold ``layer``.
    """
    name = _resolve_layer(tree, layer)
    node = tree[group_path(name)]
    da = node["activation"]
    canonical = ("presentation", *CANONICAL_DIMS[da.ndim])
    da = da.rename(dict(zip(da.dims, canonical, strict=True)))
    if "stimulus_id" not in da.coords:  # a tree not opened by open_activations
        root = tree.to_dataset(inherit=False)
        da = da.assign_coords({k: v for k, v in root.coords.items() if v.dims == ("presentation",)})
    da.attrs = {**da.attrs, "layer": name}
    return da


def flatten(tree: xr.DataTree, layer: str) -> xr.DataArray:
    """Brain-Score's view of a layer: (presentation, neuroid).

    The neuroid dim gets a (in-memory only) MultiIndex with levels ``layer`` and the layer's
    own axes: ``channel, y, x`` (conv), ``token, feature`` (tokens) or ``feature``; the
    neuroid order is C order of the layer's array (channel slowest, x fastest).

    Args:
        tree: from :func:`open_activations`.
        layer: module path or group path.

    Returns:
        (presentation, neuroid) DataArray with the presentation coordinates.
    """
    da = layer_activation(tree, layer)
    n, axes = da.sizes["presentation"], da.dims[1:]
    shape = tuple(da.sizes[d] for d in axes)
    grid = np.indices(shape).reshape(len(shape), -1)
    index = pd.MultiIndex.from_arrays(
        [np.full(grid.shape[1], da.attrs["layer"], dtype=object), *grid],
        names=["layer", *axes],
    )
    presentation = {k: v for k, v in da.coords.items() if v.dims == ("presentation",)}
    coords = xr.Coordinates.from_pandas_multiindex(index, "neuroid")
    return xr.DataArray(
        da.data.reshape(n, -1),
        dims=("presentation", "neuroid"),
        coords={**presentation, **coords},
        attrs=da.attrs,
        name="activation",
    )


def to_rsatoolbox(tree: xr.DataTree, layer: str):
    """One layer as an ``rsatoolbox.data.Dataset`` (loads the layer into memory).

    Args:
        tree: from :func:`open_activations`.
        layer: module path or group path.

    Returns:
        Dataset with measurements (n_stimuli, n_neuroids); ``descriptors`` hold ``layer`` and
        the file's provenance attributes, ``obs_descriptors`` ``stimulus_id`` and the other
        presentation coordinates, ``channel_descriptors`` the neuroid coordinates.
    """
    from rsatoolbox.data import Dataset

    flat = flatten(tree, layer)
    skip = {"layers", "coordinates"}
    descriptors = {k: v for k, v in tree.attrs.items() if k not in skip and np.ndim(v) == 0}
    descriptors["layer"] = flat.attrs["layer"]
    obs = {k: np.asarray(v.values) for k, v in flat.coords.items() if v.dims == ("presentation",)}
    levels = [name for name in flat.indexes["neuroid"].names if name != "layer"]
    channels = {name: np.asarray(flat.coords[name].values) for name in levels}
    return Dataset(
        measurements=np.asarray(flat.values),
        descriptors=descriptors,
        obs_descriptors=obs,
        channel_descriptors=channels,
    )


# --------------------------------------------------------------------------- several checkpoints

#: Columns of an activation index (CSV, one row per activation file).
INDEX_COLUMNS = ("name", "file", "checkpoint", "sha256", "step", "seed", "model")


def write_activation_index(path: str | Path, rows: Sequence[Mapping]) -> Path:
    """Write an index of activation files: a CSV with :data:`INDEX_COLUMNS`.

    ``file`` is relative to the index's folder. Written to a temporary name and renamed.
    """
    import csv

    path = Path(path)
    tmp = partial_path(path)
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(INDEX_COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in INDEX_COLUMNS})
    os.replace(tmp, path)
    return path


def read_activation_index(path: str | Path) -> pd.DataFrame:
    """The index as a table; ``file`` becomes an absolute path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Activation index {path} does not exist.")
    table = pd.read_csv(path, dtype={"name": str, "file": str, "checkpoint": str, "sha256": str})
    missing = [c for c in ("name", "file") if c not in table.columns]
    if missing:
        raise ValueError(f"{path} is not an activation index: columns {missing} are missing.")
    table["file"] = [str((path.parent / f).resolve()) for f in table["file"]]
    return table


def open_activation_index(
    path: str | Path, layer: str, chunks: str | dict | None = "auto"
) -> xr.Dataset:
    """One layer of every file of an index, stacked along a new ``checkpoint`` dim, lazily.

    Args:
        path: the index CSV written by ``neuroalign.extraction.extract_checkpoints``.
        layer: module path or group path.
        chunks: dask chunks for each file (see :func:`open_activations`).

    Returns:
        Dataset with ``activation`` (checkpoint, presentation, ...) and the coords
        ``checkpoint`` (the index's names), ``step``, ``seed``, ``sha256``, ``file`` along
        ``checkpoint`` plus the presentation coords. Every file must hold the same stimulus
        ids in the same order, else a ValueError names the file.
    """
    table = read_activation_index(path)
    if len(table) == 0:
        raise ValueError(f"Activation index {path} lists no file.")
    arrays, ids = [], None
    for _, row in table.iterrows():
        tree = open_activations(row["file"], chunks=chunks)
        da = layer_activation(tree, layer)
        these = np.asarray(da["stimulus_id"].values)
        if ids is None:
            ids, first = these, row["file"]
            presentation = {k: v for k, v in da.coords.items() if v.dims == ("presentation",)}
        elif not np.array_equal(these, ids):
            raise ValueError(
                f"{row['file']} holds other stimulus ids (or another order) than {first}; "
                "files of one index must share the stimulus set."
            )
        arrays.append(da.drop_vars([c for c in da.coords if c != "stimulus_id"]))
    stacked = xr.concat(arrays, dim="checkpoint", combine_attrs="drop_conflicts")
    coords = {
        "checkpoint": ("checkpoint", table["name"].astype(str).to_numpy()),
        "file": ("checkpoint", table["file"].to_numpy()),
    }
    for column in ("step", "seed", "sha256", "model", "checkpoint"):
        if column in table.columns:
            key = "checkpoint_path" if column == "checkpoint" else column
            coords[key] = ("checkpoint", table[column].to_numpy())
    stacked = stacked.assign_coords({**coords, **presentation})
    return xr.Dataset({"activation": stacked}, attrs={"layer": stacked.attrs.get("layer", layer)})
