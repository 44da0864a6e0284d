"""Reopening an unfinished ``.partial`` file to append after its last complete batch."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import h5netcdf

from neuroalign.activations.layout import Layout, open_file
from neuroalign.activations.schema import SCHEMA_VERSIONS, group_path

__all__ = ["reopen"]


def reopen(
    partial: Path, check: Callable[[Mapping], None]
) -> tuple[h5netcdf.File, Layout, int]:
    """Open ``partial`` for appending, cut off what an interrupted batch left behind.

    Args:
        partial: the unfinished file.
        check: called with the stored root attributes; raises if this run differs.

    Returns:
        The open file, its layout and the number of stimuli fully written.
    """
    try:
        f = open_file(partial, "a")
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(
            f"Cannot resume: the unfinished file {partial} cannot be opened ({err}); it was "
            "probably cut off in the middle of a write. Run with --overwrite (overwrite=True) to start afresh."
        ) from err
    try:
        stored = {k: f.attrs[k] for k in f.attrs}
        stored = {k: v.decode() if isinstance(v, bytes) else v for k, v in stored.items()}
        if stored.get("schema_version") not in SCHEMA_VERSIONS or "presentations_complete" not in stored:
            raise ValueError(
                f"Cannot resume {partial}: not an unfinished neuroalign activation file of "
                f"schema {' or '.join(map(str, SCHEMA_VERSIONS))}."
            )
        check(stored)
        n_written = int(stored["presentations_complete"])
        layout = Layout()
        for layer in (name for name in str(stored.get("layers", "")).split(",") if name):
            var = f[group_path(layer)]["activation"]
            layout.layers[layer] = tuple(var.shape[1:])
            layout.datasets[layer] = var._h5ds
        coords = str(stored.get("coordinates", "stimulus_id")).split()
        layout.coord_names = [c for c in coords if c != "stimulus_id"]
        # drop what an interrupted batch left beyond the last complete one
        f.resize_dimension("presentation", n_written)
        f.attrs["resumed_from"] = n_written
    except BaseException:
        f.close()
        raise
    return f, layout, n_written
