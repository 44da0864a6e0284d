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
  2-D -> ``(presentation, feature)``; zlib-compressed (with HDF5's byte shuffle; zstd on
  request), chunked by batch. The variable's ``axes`` attribute names these canonical dims.
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

import contextlib
import difflib
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import xarray as xr

from neuroalign._version import __version__

SCHEMA_VERSION = 1
PARTIAL_SUFFIX = ".partial"
CANONICAL_DIMS = {4: ("channel", "y", "x"), 3: ("token", "feature"), 2: ("feature",)}
DTYPES = ("float32", "float16")
NONFINITE_POLICIES = ("raise", "warn", "ignore")
COMPRESSIONS = ("zlib", "zstd", None)
MAX_CHUNK_BYTES = 4 * 2**20  # a batch larger than this is split into equal smaller chunks:
# HDF5 needs two chunk-sized buffers to shuffle and compress, held while the next batch runs
_RESERVED_ATTRS = {
    "layers",
    "coordinates",
    "schema_version",
    "created",
    "neuroalign_version",
    "xarray_version",
    "netcdf4_version",
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
        if isinstance(value, Path):
            value = str(value)
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


@contextlib.contextmanager
def _without_chunk_cache():
    """Variables created or opened inside get no HDF5 chunk cache.

    Each chunk is written whole, once, so a cache gains nothing; netCDF's default cache keeps
    up to 64 MiB per variable (measured: +600 MiB over 30 batches of 9 conv layers). The
    setting is process-wide in netCDF-C, so it is restored on leaving.
    """
    old = netCDF4.get_chunk_cache()
    netCDF4.set_chunk_cache(0, 1, 1.0)
    try:
        yield
    finally:
        netCDF4.set_chunk_cache(*old)


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


class ActivationWriter:
    """Write layer activations batch by batch into one netCDF-4 file (see the module docstring).

    The file is written to ``<path>.partial`` and renamed to ``path`` when closed after a
    successful run; after an exception the ``.partial`` file stays, so an unfinished file never
    looks finished. An existing file at ``path`` is replaced only on success. The first batch
    fixes the layers, their shapes and the coordinate names; later batches must match.

    After every batch the file is flushed to disk and its root attribute
    ``presentations_complete`` set to the number of stimuli fully written, so an interrupted
    file can be continued with ``resume=True``.

    Args:
        path: the final file name (``.nc``).
        attrs: provenance attributes (model, checkpoint_sha256, recipe, seed, ...): strings or
            numbers; booleans become 0/1, paths strings; anything else is a TypeError.
        dtype: ``"float32"``, or ``"float16"`` precision (float32 rounded to 10 mantissa
            bits, see the module docstring).
        compression: ``"zlib"`` (default: every netCDF/HDF5 reader decodes it), ``"zstd"``
            (several times faster to write, same size; MATLAB and R need the HDF5 zstd filter
            plugin to read it) or None.
        compression_level: 0-9 for zlib (0 switches compression off), 1-22 for zstd. Level 1
            costs about 3/4 of level 4's time for files ~3 % larger.
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
        top = 22 if compression == "zstd" else 9
        if not (isinstance(compression_level, int) and 0 <= compression_level <= top):
            raise ValueError(
                f"'compression_level' must be an int 0-{top} for {compression}; got "
                f"{compression_level!r}."
            )
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
        self._ds = None
        if resume and self.partial_path.exists():
            with _without_chunk_cache():
                self._reopen()
            return
        with _without_chunk_cache():
            self._ds = netCDF4.Dataset(self.partial_path, "w", format="NETCDF4")
        self._ds.setncatts(
            {
                **self.attrs,
                "schema_version": SCHEMA_VERSION,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "neuroalign_version": __version__,
                "xarray_version": xr.__version__,
                "netcdf4_version": netCDF4.__version__,
                "presentations_complete": 0,
            }
        )
        self._ds.createDimension("presentation", None)
        self._ds.createVariable("stimulus_id", str, ("presentation",))

    # ------------------------------------------------------------------ resuming
    def _reopen(self) -> None:
        """Open ``<path>.partial`` to append after its last complete batch."""
        where = self.partial_path
        try:
            ds = netCDF4.Dataset(where, "a")
        except OSError as err:
            raise ValueError(
                f"Cannot resume: the unfinished file {where} cannot be opened ({err}); it was "
                "probably cut off in the middle of a write. Delete it and run without resume."
            ) from err
        self._ds = ds
        try:
            stored = {k: ds.getncattr(k) for k in ds.ncattrs()}
            if stored.get("schema_version") != SCHEMA_VERSION or "presentations_complete" not in stored:
                raise ValueError(
                    f"Cannot resume {where}: not an unfinished neuroalign activation file of "
                    f"schema {SCHEMA_VERSION}."
                )
            self.resume_check(stored)
            self.n_written = int(stored["presentations_complete"])
            layers = [name for name in str(stored.get("layers", "")).split(",") if name]
            for layer in layers:
                var = ds[group_path(layer)]["activation"]
                self._layers[layer] = tuple(var.shape[1:])
            coords = str(stored.get("coordinates", "stimulus_id")).split()
            self._coord_names = [c for c in coords if c != "stimulus_id"]
            ids = ds["stimulus_id"][: self.n_written] if self.n_written else []
            self._seen_ids = {str(i) for i in ids}
            ds.setncattr("resumed_from", self.n_written)
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
        if self._ds is None or self.n_written == 0:
            return np.array([], dtype=str)
        return np.asarray(self._ds["stimulus_id"][: self.n_written]).astype(str)

    @property
    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        """Layer -> per-stimulus shape, once known (first batch, or the resumed file)."""
        return dict(self._layers)

    def stored_layer_data(self, layer: str, name: str) -> np.ndarray | None:
        """A variable of a layer's group in the (resumed) file, or None if absent."""
        if self._ds is None or layer not in self._layers:
            return None
        group = self._ds[group_path(layer)]
        return np.asarray(group[name][:]) if name in group.variables else None

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> ActivationWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def abort(self) -> None:
        """Close the file and leave it as ``<path>.partial``."""
        if self._ds is not None and self._ds.isopen():
            self._ds.close()
        self._ds = None

    def close(self) -> Path:
        """Finish the file: close it and rename ``<path>.partial`` to ``path``.

        Returns:
            The final path.
        """
        if self._ds is None:
            if self.path.exists() and not self.partial_path.exists():
                return self.path
            raise ValueError(f"The writer was aborted; the unfinished file is {self.partial_path}.")
        if self.n_written == 0:
            self.abort()
            raise ValueError(
                f"No batch was written; the unfinished file stays at {self.partial_path}."
            )
        self._ds.close()
        self._ds = None
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

        Safe to call from one background thread (netCDF4 releases the GIL while HDF5
        compresses and writes), as long as only one thread uses the writer.

        Args:
            activations: layer module path -> array of shape (b, ...) with 2, 3 or 4 dims
                (b, feature), (b, token, feature) or (b, channel, y, x); any float dtype.
            stimulus_id: (b,) ids of the stimuli, unique over the whole file.
            coords: per-stimulus coordinates, name -> (b,) strings, numbers or booleans.
        """
        if self._ds is None:
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
            with _without_chunk_cache():
                self._define(arrays, coords)
        self._check_batch(arrays, ids, coords)
        for layer, values in arrays.items():
            self._check_finite(layer, values, ids)

        start, stop = self.n_written, self.n_written + b
        # activations first, ids last: 'presentations_complete' marks what is whole
        for layer in list(arrays):
            values = arrays.pop(layer)  # let go of each layer as soon as it is written
            self._ds[group_path(layer)]["activation"][start:stop] = values.astype(
                np.float32, copy=False
            )
            del values
        for name, values in coords.items():
            if values.dtype.kind == "b":
                values = values.astype("i1")
            self._ds[name][start:stop] = values
        self._ds["stimulus_id"][start:stop] = ids.astype(object)
        self._ds.setncattr("presentations_complete", stop)
        self._ds.sync()
        self.n_written = stop
        self._seen_ids.update(ids)

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
                self._ds.createVariable(name, str, ("presentation",))
            elif values.dtype.kind == "b":
                var = self._ds.createVariable(name, "i1", ("presentation",))
                var.setncattr("dtype", "bool")  # xarray decodes this back to bool
            else:
                self._ds.createVariable(name, values.dtype, ("presentation",))
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
            {"compression": self.compression, "complevel": self.compression_level, "shuffle": True}
            if self.compression
            else {}
        )
        for layer, shape in shapes.items():
            group = self._ds.createGroup(group_path(layer))
            group.setncatts({**self.layer_attrs.get(layer, {}), "layer": layer})
            names = file_dims[layer]
            for base, size in dims[layer]:
                if names[base] not in group.dimensions:
                    group.createDimension(names[base], size)
            quantize = (
                {"quantize_mode": "BitRound", "significant_digits": 10}
                if self.dtype == "float16"
                else {}
            )
            canonical = CANONICAL_DIMS[len(shape)]
            var = group.createVariable(
                "activation",
                "f4",
                ("presentation", *(names[d] for d in canonical)),
                chunksizes=(_chunk_length(b, 4 * math.prod(shape[1:])), *shape[1:]),
                **compression,
                **quantize,
            )
            var.setncattr("axes", " ".join(("presentation", *canonical)))
            for name, (var_dims, values) in self.layer_data.get(layer, {}).items():
                values = np.asarray(values)
                extra = group.createVariable(
                    name, values.dtype, tuple(names[d] for d in var_dims), **compression
                )
                extra.setncattr("axes", " ".join(var_dims))
                extra[...] = values
            self._layers[layer] = tuple(shape[1:])
        self._ds.setncattr("layers", ",".join(self._layers))
        self._ds.setncattr("coordinates", " ".join(["stimulus_id", *self._coord_names]))

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
