"""A new file's structure: the root attributes, then, from the first batch, the coordinate
variables and one group per layer with its chunked ``activation`` variable."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

import h5netcdf
import h5py
import numpy as np
import xarray as xr

from neuroalign._version import __version__
from neuroalign.activations.codec import chunk_length
from neuroalign.activations.schema import (
    COORD_CHUNK,
    FLOAT16_MANTISSA_BITS,
    SCHEMA_VERSION,
    SCHEMA_VERSIONS,
    TIME_DIM,
    activation_dims,
    check_coord_names,
    check_layer_names,
    file_dim_names,
    group_path,
)

__all__ = ["Layout", "define_layout", "open_file", "start_file"]


@dataclass
class Layout:
    """What the first batch (or the resumed file) fixed: layers, their datasets, coordinates."""

    layers: dict[str, tuple[int, ...]] = field(default_factory=dict)  # layer -> per-stimulus shape
    datasets: dict[str, h5py.Dataset] = field(default_factory=dict)  # layer -> its activation
    coord_names: list[str] = field(default_factory=list)  # besides stimulus_id


def open_file(path, mode: str) -> h5netcdf.File:
    # no HDF5 chunk cache: every chunk is written whole, once, so a cache gains nothing
    return h5netcdf.File(path, mode, rdcc_nbytes=0)


def start_file(f: h5netcdf.File, attrs: Mapping) -> None:
    """The root of a new file: provenance and the writer's attributes, ``stimulus_id``."""
    f.attrs.update(
        {
            **attrs,
            "schema_version": SCHEMA_VERSIONS[0],  # 2 once a layer keeps time
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "neuroalign_version": __version__,
            "xarray_version": xr.__version__,
            "h5netcdf_version": h5netcdf.__version__,
            "hdf5_version": h5py.version.hdf5_version,
            "presentations_complete": 0,
        }
    )
    f.dimensions["presentation"] = None
    f.create_variable("stimulus_id", ("presentation",), h5py.string_dtype(), chunks=(COORD_CHUNK,))


def define_layout(
    f: h5netcdf.File,
    arrays: Mapping[str, np.ndarray],
    coords: Mapping[str, np.ndarray],
    *,
    layer_data: Mapping[str, Mapping[str, tuple]],
    layer_attrs: Mapping[str, Mapping],
    dtype: str,
    compression_level: int | None,
    layer_time: Mapping[str, np.ndarray] | None = None,
    time_units: str = "s",
) -> Layout:
    """Create the coordinate variables and layer groups from the first batch.

    Args:
        arrays: the first batch, layer -> (b, ...) array; fixes the layers and chunk length.
        coords: the first batch's coordinates, name -> (b,) values.
        layer_data, layer_attrs, dtype: as :class:`~neuroalign.activations.ActivationWriter`.
        compression_level: deflate level, or None for raw chunks.
        layer_time: layer -> (time,) coordinate of the layers whose arrays are
            (b, time, ...); their ``activation`` gets the dim ``time`` after ``presentation``
            and their group the coordinate variable ``time`` (``units`` ``time_units``).
    """
    layer_time = {k: np.asarray(v, dtype=np.float64) for k, v in (layer_time or {}).items()}
    check_coord_names(list(coords))
    check_layer_names(list(arrays), list(coords))
    unknown = sorted((set(layer_data) | set(layer_attrs) | set(layer_time)) - set(arrays))
    if unknown:
        raise ValueError(f"'layer_data' / 'layer_attrs' / 'layer_time' name layers not written: {unknown}.")
    for layer, times in layer_time.items():
        if times.shape != arrays[layer].shape[1:2]:
            raise ValueError(f"Layer {layer!r}: its time coordinate holds {times.shape} values for "
                             f"{arrays[layer].shape[1:2]} time steps.")
    layout = Layout(coord_names=list(coords))
    _create_coords(f, coords)
    dims = _layer_dims(arrays, layer_data, layer_time)
    file_dims = file_dim_names(dims)
    b = len(next(iter(arrays.values())))
    compression = (
        {"compression": "gzip", "compression_opts": compression_level, "shuffle": True}
        if compression_level is not None
        else {}
    )
    for layer, values in arrays.items():
        group = _require_group(f, group_path(layer))
        group.attrs.update({**layer_attrs.get(layer, {}), "layer": layer})
        names = file_dims[layer]
        for base, size in dims[layer]:
            if names[base] not in group.dimensions:
                group.dimensions[names[base]] = size
        shape = values.shape
        canonical = activation_dims(len(shape), layer in layer_time)
        if layer in layer_time:  # a netCDF coordinate variable: named as its dim
            coord = group.create_variable(names[TIME_DIM], (names[TIME_DIM],), np.float64,
                                          data=layer_time[layer])
            coord.attrs.update({"units": time_units, "axes": TIME_DIM})
        var = group.create_variable(
            "activation",
            ("presentation", *(names[d] for d in canonical)),
            np.float32,
            chunks=(chunk_length(b, 4 * math.prod(shape[1:])), *shape[1:]),
            **compression,
        )
        var.attrs["axes"] = " ".join(("presentation", *canonical))
        if dtype == "float16":
            var.attrs["_QuantizeBitRoundNumberOfSignificantBits"] = np.int32(FLOAT16_MANTISSA_BITS)
        for name, (var_dims, data) in layer_data.get(layer, {}).items():
            data = np.asarray(data)
            extra = group.create_variable(
                name,
                tuple(names[d] for d in var_dims),
                data.dtype,
                data=data,
                **(compression if data.size else {}),
            )
            extra.attrs["axes"] = " ".join(var_dims)
        layout.layers[layer] = tuple(shape[1:])
        layout.datasets[layer] = var._h5ds
    if layer_time:
        f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["layers"] = ",".join(layout.layers)
    f.attrs["coordinates"] = " ".join(["stimulus_id", *layout.coord_names])
    return layout


def _create_coords(f: h5netcdf.File, coords: Mapping[str, np.ndarray]) -> None:
    for name, values in coords.items():
        if values.dtype.kind == "O":
            dtype = h5py.string_dtype()
        elif values.dtype.kind == "b":
            dtype = np.dtype("i1")
        else:
            dtype = values.dtype
        var = f.create_variable(name, ("presentation",), dtype, chunks=(COORD_CHUNK,))
        if values.dtype.kind == "b":
            var.attrs["dtype"] = "bool"  # xarray decodes this back to bool


def _layer_dims(
    arrays: Mapping[str, np.ndarray], layer_data: Mapping[str, Mapping[str, tuple]],
    layer_time: Mapping[str, np.ndarray],
) -> dict[str, list[tuple[str, int]]]:
    """layer -> (canonical dim, size) of its activation, then of its extra variables."""
    dims = {}
    for layer, values in arrays.items():
        try:
            canonical = activation_dims(values.ndim, layer in layer_time)
        except ValueError as err:
            raise ValueError(f"Layer {layer!r}: {err} (shape {values.shape})") from None
        dims[layer] = list(zip(canonical, values.shape[1:], strict=True))
        for name, (var_dims, data) in layer_data.get(layer, {}).items():
            data = np.asarray(data)
            if len(var_dims) != data.ndim:
                raise ValueError(
                    f"Layer {layer!r} variable {name!r}: dims {var_dims} do not match its "
                    f"shape {data.shape}."
                )
            dims[layer] += list(zip(var_dims, data.shape, strict=True))
    return dims


def _require_group(f: h5netcdf.File, path: str):
    group = f
    for part in path.split("/"):
        group = group.groups[part] if part in group.groups else group.create_group(part)
    return group
