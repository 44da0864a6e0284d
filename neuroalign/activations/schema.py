"""The rules of the activation file (schemas 1 and 2): names, dims and attributes a file may
hold, and where it lives. Schema 2 is schema 1 plus a ``time`` dim after ``presentation`` in
layers that keep one; a file without such a layer is written as schema 1."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "CANONICAL_DIMS",
    "COMPRESSIONS",
    "COORD_CHUNK",
    "DTYPES",
    "FLOAT16_MANTISSA_BITS",
    "NONFINITE_POLICIES",
    "PARTIAL_SUFFIX",
    "RESERVED_ATTRS",
    "RESERVED_COORDS",
    "SCHEMA_VERSION",
    "SCHEMA_VERSIONS",
    "TIME_DIM",
    "activation_dims",
    "VOLATILE_ATTRS",
    "attr_differences",
    "check_attrs",
    "check_coord_names",
    "check_layer_names",
    "coord_values",
    "file_dim_names",
    "group_path",
    "partial_path",
]

SCHEMA_VERSION = 2  # the newest; files without a time layer are written as 1
SCHEMA_VERSIONS = (1, 2)  # what the readers and resume understand
TIME_DIM = "time"
PARTIAL_SUFFIX = ".partial"
CANONICAL_DIMS = {4: ("channel", "y", "x"), 3: ("token", "feature"), 2: ("feature",)}
DTYPES = ("float32", "float16")
NONFINITE_POLICIES = ("raise", "warn", "ignore")
COMPRESSIONS = ("zlib", None)
FLOAT16_MANTISSA_BITS = 10  # float16's explicit mantissa bits
COORD_CHUNK = 4096  # presentations per chunk of a coordinate variable
RESERVED_ATTRS = frozenset({
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
})
#: attributes that may differ when an interrupted file is resumed
VOLATILE_ATTRS = frozenset({"device", "torch_version"})
RESERVED_COORDS = frozenset({"presentation", "stimulus_id"})


def activation_dims(ndim: int, time: bool = False) -> tuple[str, ...]:
    """The canonical dims (after ``presentation``) of a (b, ...) array of ``ndim`` dims: with
    ``time``, ``time`` and then the dims of the array without it."""
    rest = CANONICAL_DIMS.get(ndim - 1 if time else ndim)
    if rest is None:
        what = "(b, time, ...) with 3, 4 or 5 dims" if time else "(b, ...) with 2, 3 or 4 dims"
        raise ValueError(f"activations must have shape {what}; got {ndim} dims.")
    return (TIME_DIM, *rest) if time else rest


def group_path(layer: str) -> str:
    """The netCDF group / DataTree path of a layer: ``encoder.blocks.3`` -> ``encoder/blocks/3``."""
    return layer.replace(".", "/")


def partial_path(path: str | Path) -> Path:
    """Where an unfinished file lives until it is complete: ``<path>.partial``."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


def check_attrs(attrs: Mapping) -> dict:
    """Provenance attributes as netCDF can store them: str, int or float (bool -> int)."""
    out = {}
    for key, value in attrs.items():
        if not isinstance(key, str) or not key or "/" in key:
            raise ValueError(f"Attribute names must be non-empty strings without '/'; got {key!r}.")
        if key in RESERVED_ATTRS:
            raise ValueError(
                f"Attribute {key!r} is set by the writer itself; reserved names: "
                f"{sorted(RESERVED_ATTRS)}."
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


def attr_differences(given: Mapping, stored: Mapping) -> list[str]:
    """``"key: file <old>, now <new>"`` for every given attribute whose stored value differs.

    Attributes that may change between runs of one extraction (``device``, ``torch_version``)
    are not compared.
    """
    differ = []
    for key, value in check_attrs(given).items():
        if key in VOLATILE_ATTRS:
            continue
        old = stored.get(key)
        if isinstance(old, np.generic):
            old = old.item()
        if old != value:
            differ.append(f"{key}: file {old!r}, now {value!r}")
    return differ


def check_layer_names(layers: Sequence[str], coord_names: Sequence[str]) -> None:
    """Raise ValueError for a layer name that is no module path or clashes in the file."""
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


def check_coord_names(names: Sequence[str]) -> None:
    """Raise ValueError for a per-stimulus coordinate name the file cannot hold."""
    for name in names:
        if name in RESERVED_COORDS or not name or "/" in name:
            raise ValueError(
                f"Coordinate name {name!r} is not allowed (reserved: "
                f"{sorted(RESERVED_COORDS)}; no '/')."
            )


def file_dim_names(
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


def coord_values(name: str, values, n: int) -> np.ndarray:
    """A per-stimulus coordinate as the file stores it: str objects or numbers, n of them."""
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
