"""The activation index: a CSV listing the activation files of several checkpoints, and one
layer of all of them stacked along a ``checkpoint`` dim."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from neuroalign.activations.reader import layer_activation, open_activations
from neuroalign.activations.schema import partial_path

__all__ = [
    "INDEX_COLUMNS",
    "open_activation_index",
    "read_activation_index",
    "write_activation_index",
]

#: Columns of an activation index (CSV, one row per activation file).
INDEX_COLUMNS = ("name", "file", "checkpoint", "sha256", "step", "seed", "model")


def write_activation_index(out: str | Path, rows: Sequence[Mapping]) -> Path:
    """Write an index of activation files: the CSV file ``out`` with :data:`INDEX_COLUMNS`.

    ``file`` is relative to the index's folder. Written to a temporary name and renamed.
    """
    out = Path(out)
    tmp = partial_path(out)
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(INDEX_COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in INDEX_COLUMNS})
    os.replace(tmp, out)
    return out


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
            presentation = {
                str(k): v for k, v in da.coords.items() if v.dims == ("presentation",)
            }
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
