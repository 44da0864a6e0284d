"""Reading an activation file: the tree, one layer with canonical dims, flat and rsatoolbox views.

Reading needs no PyTorch. A file that is not a readable activation file gives one
:class:`~neuroalign.activations.ActivationFileError` naming the file (and the layer) and what
is wrong, both on opening and when a layer's data turn out unreadable.
"""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from neuroalign.activations.errors import ActivationFileError
from neuroalign.activations.schema import (
    CANONICAL_DIMS,
    PARTIAL_SUFFIX,
    TIME_DIM,
    group_path,
    partial_path,
)

__all__ = [
    "check_netcdf4",
    "flatten",
    "layer_activation",
    "layer_names",
    "layer_read_errors",
    "open_activations",
    "to_rsatoolbox",
]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: what a broken HDF5 file raises: netCDF-C a RuntimeError ("NetCDF: HDF error"), h5py OSError
_READ_ERRORS = (OSError, RuntimeError)


def check_netcdf4(path: Path) -> None:
    """Raise ActivationFileError unless ``path`` starts like a netCDF-4 (HDF5) file."""
    with open(path, "rb") as f:
        head = f.read(8)
        offset = 512  # HDF5 looks for its signature at 0, 512, 1024, 2048, ...
        while head != _HDF5_SIGNATURE and offset < os.path.getsize(path):
            f.seek(offset)
            head = f.read(8)
            offset *= 2
    if head == _HDF5_SIGNATURE:
        return
    kind = "an empty file" if not head else f"it starts with {head[:8]!r}"
    if head[:3] == b"CDF":
        kind = "a netCDF-3 (classic) file"
    raise ActivationFileError(f"{path}: not a netCDF-4 file ({kind}).")


@contextlib.contextmanager
def layer_read_errors(path: str | Path, layer: str) -> Iterator[None]:
    """Turn a failed read of ``layer``'s data into one ActivationFileError naming file and layer."""
    try:
        yield
    except _READ_ERRORS as err:
        if isinstance(err, FileNotFoundError):
            raise
        resume = (
            "; if it is all that is left of an interrupted run, continue it with --resume "
            "(resume=True), which keeps only its complete batches"
            if str(path).endswith(PARTIAL_SUFFIX)
            else ""
        )
        raise ActivationFileError(
            f"{path}: truncated/corrupt: layer {group_path(layer)} unreadable ({err}); "
            f"re-extract it{resume}."
        ) from err


class _CheckedArray(BackendArray):
    """A layer's backend array whose read errors name the file and layer."""

    def __init__(self, array: BackendArray, path: Path, layer: str):
        self.array, self.path, self.layer = array, path, layer
        # xarray's BackendArray leaves shape and dtype to its subclasses, which all have them
        self.shape, self.dtype = array.shape, array.dtype  # type: ignore[attr-defined]

    def __getitem__(self, key):
        with layer_read_errors(self.path, self.layer):
            return self.array[key]


def _checked_variable(var: xr.Variable, path: Path, layer: str, chunks) -> xr.Variable:
    """``var`` (opened without dask) reading through :class:`_CheckedArray`; chunked like the
    tree opened with dask (``chunks``: its dask chunks, or None)."""
    data: object = var._data
    while not isinstance(data, BackendArray):  # xarray's lazy wrappers around the backend's
        data = getattr(data, "array", None)
        if data is None:  # not lazily backed (e.g. loaded): nothing to check
            return var
    lazy = indexing.LazilyIndexedArray(_CheckedArray(data, path, layer))
    backing: indexing.ExplicitlyIndexed = lazy
    if chunks is None:  # as xarray's backends wrap their lazy arrays (its annotation is narrower)
        backing = indexing.MemoryCachedArray(indexing.CopyOnWriteArray(lazy))  # type: ignore[arg-type]
    checked = xr.Variable(var.dims, backing, var.attrs, var.encoding)
    return checked if chunks is None else checked.chunk(dict(zip(var.dims, chunks, strict=True)))


def _open_tree(path: Path, chunks) -> xr.DataTree:
    engine, backend_kwargs = "netcdf4", None
    if path.name.endswith(PARTIAL_SUFFIX):
        # a .partial may be open for writing, which HDF5 locks: a look through h5py, unlocked
        engine, backend_kwargs = "h5netcdf", {"driver_kwds": {"locking": False}}
    try:
        return xr.open_datatree(
            path, chunks=chunks, engine=engine, backend_kwargs=backend_kwargs
        )
    except _READ_ERRORS as err:
        raise ActivationFileError(
            f"{path}: truncated/corrupt: it cannot be opened ({err}); re-extract it."
        ) from err


def _check_structure(tree: xr.DataTree, path: Path) -> None:
    root = tree.to_dataset(inherit=False)
    if "stimulus_id" not in root.variables:
        raise ActivationFileError(f"{path}: not a neuroalign activation file (no stimulus_id).")
    if "layers" not in tree.attrs:
        raise ActivationFileError(
            f"{path}: not a neuroalign activation file (its root has no 'layers' attribute)."
        )
    for layer in layer_names(tree):
        where = group_path(layer)
        try:
            node = tree[where]
        except KeyError:
            node = None
        if node is None or "activation" not in node.variables:
            raise ActivationFileError(
                f"{path}: truncated/corrupt: layer {where} is listed but has no 'activation'; "
                "re-extract it."
            )


def open_activations(path: str | Path, chunks: str | dict | None = "auto") -> xr.DataTree:
    """Open an activation file lazily as a DataTree.

    A ``.partial`` file (an extraction still running, or interrupted) can be opened for a
    look: it is opened without HDF5's file lock and cut to its ``presentations_complete``
    stimuli (a read that meets a batch being written may fail; open it again).

    A sharded extraction's manifest (``acts.manifest.json``) opens as one tree over all its
    shards, equal to a single-process file's (see
    :func:`neuroalign.activations.shards.open_manifest`; a missing or unfinished shard is an
    ActivationFileError naming it and the command that finishes it).

    Args:
        path: the ``.nc`` file written by :class:`ActivationWriter`, or its ``.partial``, or
            a shard manifest (``.json``).
        chunks: dask chunks (``"auto"`` keeps the file's batch chunks as a basis); None reads
            lazily without dask.

    Returns:
        The tree; its root holds the presentation coordinates (``stimulus_id``, ...) and every
        layer node's ``activation`` carries the same presentation coordinates.

    Raises:
        FileNotFoundError: no such file.
        ActivationFileError: not netCDF-4, not an activation file, or truncated/corrupt (also
            raised later, naming the layer, when a layer's data cannot be read).
    """
    from neuroalign.activations.shards import is_manifest, manifest_path, open_manifest

    path = Path(path)
    if is_manifest(path):
        return open_manifest(path, chunks)
    if not path.is_file():
        partial = partial_path(path)
        hint = (
            f" Only the unfinished {partial} exists: the extraction did not complete (open "
            "the .partial itself to look at its complete part)."
            if partial.exists()
            else ""
        )
        if manifest_path(path).is_file():
            hint = (f" A sharded extraction wrote {manifest_path(path)}: open that, or merge "
                    f"its shards into one file with neuroalign merge {manifest_path(path)} "
                    f"--out {path}.")
        raise FileNotFoundError(f"Activation file {path} does not exist.{hint}")
    check_netcdf4(path)
    tree = _open_tree(path, None)
    # replacing a node's dataset drops its file closer: one closer for all, on the root
    closers = [closer for node in tree.subtree if (closer := getattr(node, "_close", None))]

    def close() -> None:
        for close_node in closers:
            close_node()

    try:
        _check_structure(tree, path)
        _check_layers(tree, path, None if chunks is None else _dask_chunks(path, chunks))
        tree.set_close(close)
        if path.name.endswith(PARTIAL_SUFFIX):
            tree = _complete_part(tree)
    except BaseException:
        close()
        raise
    return tree


def _dask_chunks(path: Path, chunks) -> dict[str, dict[str, tuple]]:
    """node path -> {variable: dask chunks} as xarray's open with ``chunks`` chooses them
    (only metadata is read)."""
    ref = _open_tree(path, chunks)
    try:
        return {
            node.path: {
                name: var.chunks
                for name, var in node.to_dataset(inherit=False).variables.items()
                if var.chunks is not None
            }
            for node in ref.subtree
        }
    finally:
        ref.close()


def _check_layers(tree: xr.DataTree, path: Path, dask_chunks) -> None:
    """Load the root coordinates; let every layer's activation read through checks; chunk
    every variable with dask as xarray would (``dask_chunks`` None: no dask)."""
    root = tree.to_dataset(inherit=False)
    with layer_read_errors(path, "stimulus_id"):
        root_coords = root.coords.to_dataset().load().coords  # small: load
    tree.dataset = root.assign_coords(root_coords)
    layers = {group_path(layer): layer for layer in layer_names(tree)}
    for node in tree.subtree:
        if node is tree:
            continue
        ds = node.to_dataset(inherit=False)
        chunks = (dask_chunks or {}).get(node.path, {})
        variables = {}
        for name, var in ds.variables.items():
            if name == "activation" and node.path.strip("/") in layers:
                layer = layers[node.path.strip("/")]
                variables[name] = _checked_variable(var, path, layer, chunks.get(name))
            elif name in chunks:
                variables[name] = var.chunk(dict(zip(var.dims, chunks[name], strict=True)))
        ds = ds.assign(variables)
        node.dataset = ds.assign_coords(root_coords) if node.path.strip("/") in layers else ds


def _complete_part(tree: xr.DataTree) -> xr.DataTree:
    """A .partial's first ``presentations_complete`` presentations (what a later batch left
    half-written is cut off)."""
    n = int(tree.attrs.get("presentations_complete", 0))
    if n >= tree.sizes.get("presentation", 0):
        return tree
    datasets = {}
    for node in tree.subtree:
        ds = node.to_dataset(inherit=False)
        datasets[node.path] = ds.isel(presentation=slice(0, n)) if "presentation" in ds.dims else ds
    cut = xr.DataTree.from_dict(datasets)
    cut.set_close(tree.close)
    return cut


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
        (presentation, feature), with ``time`` after ``presentation`` in a layer that keeps
        time (its coordinate: the frame times); lazy when the tree is. attrs hold ``layer``.
    """
    name = _resolve_layer(tree, layer)
    node = tree[group_path(name)]
    da = node["activation"]
    axes = str(da.attrs.get("axes", "")).split()
    canonical = tuple(axes) if len(axes) == da.ndim else ("presentation", *CANONICAL_DIMS[da.ndim])
    da = da.rename(dict(zip(da.dims, canonical, strict=True)))
    if "stimulus_id" not in da.coords:  # a tree not opened by open_activations
        root = tree.to_dataset(inherit=False)
        da = da.assign_coords({k: v for k, v in root.coords.items() if v.dims == ("presentation",)})
    da.attrs = {**da.attrs, "layer": name}
    return da


def flatten(tree: xr.DataTree, layer: str, keep_time: bool = False) -> xr.DataArray:
    """Brain-Score's view of a layer: (presentation, neuroid).

    The neuroid dim gets a (in-memory only) MultiIndex with levels ``layer`` and the layer's
    own axes: ``channel, y, x`` (conv), ``token, feature`` (tokens) or ``feature``; the
    neuroid order is C order of the layer's array (channel slowest, x fastest). A layer with
    a ``time`` dim has it folded into the neuroids (time slowest, level ``time`` holding the
    time step's index), as every analysis on files does, unless ``keep_time``.

    Args:
        tree: from :func:`open_activations`.
        layer: module path or group path.
        keep_time: keep ``time`` as its own dim: (presentation, time, neuroid).

    Returns:
        (presentation, neuroid) DataArray with the presentation coordinates, or
        (presentation, time, neuroid) with the time coordinate.
    """
    da = layer_activation(tree, layer)
    timed = keep_time and TIME_DIM in da.dims
    lead = ("presentation", TIME_DIM) if timed else ("presentation",)
    n, axes = tuple(da.sizes[d] for d in lead), da.dims[len(lead):]
    shape = tuple(da.sizes[d] for d in axes)
    grid = np.indices(shape).reshape(len(shape), -1)
    index = pd.MultiIndex.from_arrays(
        [np.full(grid.shape[1], da.attrs["layer"], dtype=object), *grid],
        names=["layer", *axes],
    )
    presentation = {k: v for k, v in da.coords.items() if v.dims in (("presentation",), (TIME_DIM,))
                    and (timed or v.dims == ("presentation",))}
    coords = xr.Coordinates.from_pandas_multiindex(index, "neuroid")
    return xr.DataArray(
        da.data.reshape(*n, -1),
        dims=(*lead, "neuroid"),
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
