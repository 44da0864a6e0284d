"""Sharded activation files: a manifest naming one shard file per process of a ``torchrun``
extraction, read as one DataTree, or merged into one file.

A sharded extraction of ``--out acts.nc`` on W processes writes

- ``acts.shard-RR-of-WW.nc``: rank RR's contiguous share of the stimuli, an ordinary activation
  file (its own ``.partial`` while it is written, resumable on its own) whose root attributes
  also say which share it holds (:data:`SHARD_ATTRS`);
- ``acts.manifest.json``: the manifest (:func:`read_manifest`), written by rank 0 before the
  first batch: the shards with their stimulus ranges, the batch size, the number of stimuli
  and a hash of their ids, the settings (the root attributes every shard must carry, among
  them the weights' ``weights_sha256``) and the command that continues the run.

No torch is needed here; the extraction side is :mod:`neuroalign.extraction.shards`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from neuroalign.activations.errors import ActivationFileError
from neuroalign.activations.schema import (
    RESERVED_ATTRS,
    TIME_DIM,
    VOLATILE_ATTRS,
    attr_differences,
    group_path,
    partial_path,
)

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_SUFFIX",
    "SHARD_ATTRS",
    "batch_shares",
    "ids_sha256",
    "is_manifest",
    "manifest_path",
    "merge_shards",
    "open_manifest",
    "read_manifest",
    "shard_path",
    "shard_settings",
    "write_manifest",
]

MANIFEST_FORMAT = "neuroalign activation shards"
MANIFEST_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"
#: root attributes of a shard file saying which share of the stimuli it holds
SHARD_ATTRS = ("shard_index", "shard_count", "shard_start", "shard_stop")


def manifest_path(out: str | Path) -> Path:
    """The manifest of a sharded extraction to ``out``: ``acts.nc`` -> ``acts.manifest.json``."""
    out = Path(out)
    return out.with_name(out.stem + MANIFEST_SUFFIX)


def shard_path(out: str | Path, index: int, count: int) -> Path:
    """Shard ``index`` of ``count``: ``acts.nc`` -> ``acts.shard-01-of-04.nc`` (zero-padded to
    the width of ``count``, at least 2 digits, so the shards sort in order)."""
    out = Path(out)
    width = max(2, len(str(count)))
    return out.with_name(f"{out.stem}.shard-{index:0{width}d}-of-{count:0{width}d}{out.suffix}")


def is_manifest(path: str | Path) -> bool:
    return str(path).endswith(".json")


def batch_shares(n: int, batch_size: int, count: int) -> list[tuple[int, int]]:
    """The contiguous (start, stop) share of each of ``count`` processes in ``n`` stimuli.

    Shares are whole batches of ``batch_size`` (the last batch of the set may be short), as
    equal in number as possible, the first ranks taking one more: every batch is the one a
    single process runs, so each stimulus's values are those of a single-process run bit for
    bit, and the shards differ by at most one batch. Ranks beyond the number of batches get an
    empty share (start == stop).
    """
    if n < 0 or batch_size < 1 or count < 1:
        raise ValueError(f"Bad share request: n={n}, batch_size={batch_size}, count={count}.")
    batches = -(-n // batch_size)
    base, extra = divmod(batches, count)
    shares, first = [], 0
    for rank in range(count):
        k = base + (rank < extra)
        start = min(n, first * batch_size)
        first += k
        shares.append((start, min(n, first * batch_size)))
    return shares


def ids_sha256(ids: Iterable) -> str:
    """A SHA-256 of the stimulus ids in order (one per line): the same set in the same order."""
    digest = hashlib.sha256()
    for stimulus in ids:
        digest.update(str(stimulus).encode() + b"\n")
    return digest.hexdigest()


def shard_settings(attrs: Mapping) -> dict:
    """The root attributes that every shard (and a single-process file) shares: all but the
    writer's own (:data:`RESERVED_ATTRS`), the per-process ones (:data:`VOLATILE_ATTRS`) and
    the share (:data:`SHARD_ATTRS`)."""
    out = {}
    for key, value in attrs.items():
        if key in RESERVED_ATTRS or key in VOLATILE_ATTRS or key in SHARD_ATTRS:
            continue
        out[key] = value.item() if isinstance(value, np.generic) else value
    return out


def write_manifest(out: str | Path, shares: Sequence[tuple[int, int]], stimulus_ids: Iterable,
                   batch_size: int, settings: Mapping, command: str) -> Path:
    """Write the manifest of a sharded extraction to ``out`` (temporary name, then rename)."""
    path = manifest_path(out)
    count = len(shares)
    ids = np.asarray(list(stimulus_ids)).astype(str)
    shards = []
    for index, (start, stop) in enumerate(shares):
        shard = {"index": index, "file": shard_path(out, index, count).name, "start": start,
                 "stop": stop}
        if stop > start:
            shard.update(first_id=str(ids[start]), last_id=str(ids[stop - 1]))
        else:
            shard["file"] = None  # an empty share writes no file
        shards.append(shard)
    manifest = {
        "format": MANIFEST_FORMAT,
        "manifest_version": MANIFEST_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "out": Path(out).name,
        "n_stimuli": int(len(ids)),
        "stimulus_ids_sha256": ids_sha256(ids),
        "batch_size": int(batch_size),
        "shard_count": count,
        "weights_sha256": settings.get("weights_sha256"),
        "command": command,
        "settings": dict(settings),
        "shards": shards,
    }
    tmp = partial_path(path)
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_manifest(path: str | Path) -> dict:
    """The manifest as a dict; ``shards[i]["path"]`` is the shard's absolute path (None for an
    empty share). A file that is no manifest is an ActivationFileError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Shard manifest {path} does not exist.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ActivationFileError(f"{path}: not a shard manifest (not JSON: {err}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ActivationFileError(f"{path}: not a neuroalign shard manifest (no format "
                                  f"{MANIFEST_FORMAT!r}).")
    for shard in manifest["shards"]:
        shard["path"] = None if shard["file"] is None else path.parent / shard["file"]
    return manifest


def _finish_hint(manifest: dict) -> str:
    return f"finish it with: {manifest['command']}" if manifest.get("command") else \
        "finish it by running the extraction again with --resume (resume=True) under the same " \
        "torchrun layout"


def _check_shard(manifest: dict, shard: dict, attrs: Mapping, n: int, where: Path) -> None:
    """ActivationFileError naming the shard when it is not the share the manifest names."""
    label = f"Shard {shard['index']} of {manifest['shard_count']} ({where})"
    share = {"shard_index": shard["index"], "shard_count": manifest["shard_count"],
             "shard_start": shard["start"], "shard_stop": shard["stop"]}
    stored_share = {k: (v.item() if isinstance(v, np.generic) else v)
                    for k, v in attrs.items() if k in SHARD_ATTRS}
    differ = [f"{k}: file {stored_share.get(k)!r}, manifest {v!r}" for k, v in share.items()
              if stored_share.get(k) != v]
    differ += attr_differences(manifest["settings"], attrs)
    if differ:
        raise ActivationFileError(
            f"{label} was written with other settings than the manifest's ("
            + "; ".join(d.replace(", now ", ", manifest ") for d in differ)
            + f"); it belongs to another extraction. Re-extract it: {_finish_hint(manifest)} "
            "after deleting it, or start afresh with --overwrite."
        )
    if n != shard["stop"] - shard["start"]:
        raise ActivationFileError(f"{label} holds {n} stimuli, the manifest "
                                  f"{shard['stop'] - shard['start']}.")


def _open_shard(manifest: dict, shard: dict, chunks) -> xr.DataTree:
    from neuroalign.activations.reader import open_activations

    where: Path = shard["path"]
    label = f"Shard {shard['index']} of {manifest['shard_count']} ({where})"
    if not where.is_file():
        partial = partial_path(where)
        if partial.is_file():
            done = _partial_count(partial)
            raise ActivationFileError(
                f"{label} is incomplete: only {partial.name} exists, with {done} of its "
                f"{shard['stop'] - shard['start']} stimuli; {_finish_hint(manifest)}")
        raise ActivationFileError(f"{label} is missing; {_finish_hint(manifest)} (finished "
                                  "shards are kept as they are).")
    tree = open_activations(where, chunks=chunks)
    try:
        _check_shard(manifest, shard, tree.attrs, tree.sizes.get("presentation", 0), where)
    except BaseException:
        tree.close()
        raise
    return tree


def _partial_count(partial: Path) -> int | str:
    import h5py

    try:
        with h5py.File(partial, "r", locking=False) as f:
            return int(np.ravel(f.attrs.get("presentations_complete", 0))[0])
    except (OSError, ValueError, IndexError):
        return "an unknown number"


def open_manifest(path: str | Path, chunks: str | dict | None = "auto") -> xr.DataTree:
    """One lazy DataTree over every shard of a manifest, as :func:`open_activations` opens a
    single-process file: the presentations in the set's order, the same stimulus ids,
    coordinates, layers and root attributes (those of shard 0 without the share; ``chunks``
    None reads each shard with its file's own dask chunks, since shards are joined with dask).

    Raises:
        ActivationFileError: a shard missing or unfinished (naming it and the command that
            finishes it), a shard written with other settings than the manifest's, or ids that
            are not the set's.
    """
    path = Path(path)
    manifest = read_manifest(path)
    chunks = {} if chunks is None else chunks
    shards = [s for s in manifest["shards"] if s["path"] is not None]
    trees: list[xr.DataTree] = []
    try:
        for shard in shards:
            trees.append(_open_shard(manifest, shard, chunks))
            layers = (str(trees[0].attrs.get("layers")), str(trees[-1].attrs.get("layers")))
            if layers[0] != layers[1]:
                raise ActivationFileError(
                    f"Shard {shard['index']} ({shard['path']}) holds the layers {layers[1]!r}, "
                    f"shard 0 {layers[0]!r}: it belongs to another extraction.")
        tree = _join(trees)
        ids = np.asarray(tree["stimulus_id"].values).astype(str)
        if len(ids) != manifest["n_stimuli"] or ids_sha256(ids) != manifest["stimulus_ids_sha256"]:
            raise ActivationFileError(
                f"{path}: the shards' stimulus ids are not the {manifest['n_stimuli']} ids the "
                "manifest was written for (another stimulus set or order); re-extract with "
                "--overwrite.")
    except BaseException:
        for t in trees:
            t.close()
        raise

    def close() -> None:
        for t in trees:
            t.close()

    tree.set_close(close)
    return tree


def _join(trees: list[xr.DataTree]) -> xr.DataTree:
    """The shards' trees joined along ``presentation``; what has no presentation dim (a
    projection matrix, a time coordinate) is shard 0's."""
    datasets = {}
    for node in trees[0].subtree:
        parts = [_node(t, node.path).to_dataset(inherit=False) for t in trees]
        ds = parts[0]
        if "presentation" in ds.dims and len(parts) > 1:
            ds = xr.concat(parts, dim="presentation", data_vars="minimal", coords="minimal",
                           compat="override", join="override", combine_attrs="override")
        datasets[node.path] = ds
    joined = xr.DataTree.from_dict(datasets)
    joined.attrs = {k: v for k, v in trees[0].attrs.items() if k not in SHARD_ATTRS}
    joined.attrs["presentations_complete"] = sum(t.sizes.get("presentation", 0) for t in trees)
    return joined


def merge_shards(manifest: str | Path, out: str | Path, *, overwrite: bool = False,
                 progress: bool = True, compression_threads: int | None = None) -> Path:
    """Write the shards of a manifest into one activation file, as a single process writes it.

    Through :class:`~neuroalign.activations.ActivationWriter`, batch by batch (the
    extraction's batch size, so the chunks are a single-process file's), with the settings'
    dtype and compression, each layer's extra variables (projection, PCA mean, time) and
    attributes: the result holds the values, ids, coordinates and attributes of a
    single-process extraction (only ``created``, ``device`` and ``torch_version`` may differ).
    Written to ``<out>.partial`` and renamed when complete.

    Args:
        manifest: the ``.manifest.json`` of a sharded extraction.
        out: the file to write (``.nc``).
        overwrite: replace an existing ``out``; without it an existing ``out`` is a
            FileExistsError.
        progress: a tqdm bar over the stimuli.
        compression_threads: as for the writer (None: one per core, at most 8).

    Returns:
        ``out``.
    """
    from neuroalign.activations.reader import layer_names
    from neuroalign.activations.writer import ActivationWriter

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists: --overwrite (overwrite=True) replaces it.")
    info = read_manifest(manifest)
    tree = open_manifest(manifest, chunks={})
    try:
        attrs = {k: v for k, v in tree.attrs.items() if k not in RESERVED_ATTRS}
        layers = layer_names(tree)
        extra, layer_attrs, layer_time, units = _layer_extras(tree, layers)
        compression = str(attrs.get("compression", "none"))
        level = int(compression.rpartition("level=")[2]) if "level=" in compression else 0
        root = tree.to_dataset(inherit=False)
        coord_names = [str(c) for c, v in root.coords.items()  # in file order
                       if v.dims == ("presentation",) and c != "stimulus_id"]
        n, batch = tree.sizes["presentation"], int(info["batch_size"])
        bar = tqdm(total=n, unit="img", desc="merge", disable=not progress)
        with ActivationWriter(
            out, attrs=attrs, dtype=str(attrs.get("dtype", "float32")),
            compression="zlib" if level else None, compression_level=level,
            nonfinite="ignore", layer_data=extra, layer_attrs=layer_attrs,
            layer_time=layer_time, time_units=units, compression_threads=compression_threads,
        ) as writer:
            # shard by shard, without dask: shards start at whole batches, so the batches
            # written are the single process's
            for shard in info["shards"]:
                if shard["path"] is not None:
                    _copy_shard(shard["path"], writer, layers, coord_names, batch, bar)
        bar.close()
    finally:
        tree.close()
    return out


def _copy_shard(path: Path, writer, layers: list[str], coord_names: list[str], batch: int,
                bar) -> None:
    """Write one (checked) shard into ``writer``, ``batch`` stimuli at a time."""
    from neuroalign.activations.reader import layer_read_errors, open_activations

    part = open_activations(path, chunks=None)
    try:
        root = part.to_dataset(inherit=False)
        for start in range(0, part.sizes["presentation"], batch):
            rows = slice(start, start + batch)
            arrays = {}
            for layer in layers:
                with layer_read_errors(path, layer):
                    node = _node(part, group_path(layer)).to_dataset(inherit=False)
                    arrays[layer] = np.asarray(node["activation"][rows].values)
            coords: dict[str, Any] = {c: np.asarray(root[c][rows].values) for c in coord_names}
            ids = np.asarray(root["stimulus_id"][rows].values).astype(str)
            writer.write_batch(arrays, list(ids), coords)
            bar.update(len(ids))
    finally:
        part.close()


def _node(tree: xr.DataTree, path: str) -> xr.DataTree:
    node = tree[path]
    assert isinstance(node, xr.DataTree)  # a group path, not a variable's
    return node


def _layer_extras(tree: xr.DataTree, layers: list[str]):
    """layer_data, layer_attrs, layer_time and the time units of the writer, from shard 0."""
    extra: dict[str, dict] = {}
    attrs: dict[str, dict] = {}
    times: dict[str, np.ndarray] = {}
    units = "s"
    for layer in layers:
        ds = _node(tree, group_path(layer)).to_dataset(inherit=False)
        attrs[layer] = {k: v for k, v in ds.attrs.items() if k != "layer"}
        axes = str(ds["activation"].attrs.get("axes", "")).split()
        if TIME_DIM in axes:
            name = ds["activation"].dims[axes.index(TIME_DIM)]
            times[layer] = np.asarray(ds[name].values)
            units = str(ds[name].attrs.get("units", units))
        for name, var in ds.data_vars.items():
            if name == "activation" or "presentation" in var.dims:
                continue
            dims = tuple(str(var.attrs.get("axes", " ".join(map(str, var.dims)))).split())
            extra.setdefault(layer, {})[name] = (dims, np.asarray(var.values))
    return extra, attrs, times, units


def resume_command(argv: Sequence[str], world: int, local_world: int) -> str:
    """The torchrun command line that continues a sharded CLI extraction (``--resume``)."""
    args = [a for a in argv if a not in ("--resume", "--overwrite")] + ["--resume"]
    nodes = max(1, world // max(1, local_world))
    rendezvous = " --rdzv_backend c10d --rdzv_endpoint HOST:PORT" if nodes > 1 else ""
    return (f"torchrun --nnodes {nodes} --nproc_per_node {local_world}{rendezvous} "
            f"-m neuroalign {shlex.join(args)}")
