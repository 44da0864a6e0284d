"""Checks of one batch before anything of it is written: shapes, ids, coordinates, NaN/inf."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from neuroalign.activations.layout import Layout
from neuroalign.activations.schema import coord_values

__all__ = ["as_batch", "check_batch", "check_finite"]


def as_batch(
    activations: Mapping[str, np.ndarray],
    stimulus_id: Sequence[str],
    coords: Mapping[str, Sequence] | None,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The batch as arrays: ids (b,) str, layer -> (b, ...) float array, coord -> (b,)."""
    ids = np.asarray(stimulus_id).astype(str)
    if ids.ndim != 1 or len(ids) == 0:
        raise ValueError(f"'stimulus_id' must be a non-empty 1-D sequence; got shape {ids.shape}.")
    b = len(ids)
    coord_arrays = {k: coord_values(k, v, b) for k, v in (coords or {}).items()}
    arrays = {}
    for layer, values in activations.items():
        values = np.asarray(values)
        if not 2 <= values.ndim <= 5 or values.shape[0] != b:
            raise ValueError(
                f"Layer {layer!r}: activations must have shape (b, ...) with 2, 3 or 4 dims "
                f"(5 with time) and b = {b} stimuli; got {values.shape}."
            )
        if values.dtype.kind != "f":
            raise TypeError(f"Layer {layer!r}: activations must be floats; got {values.dtype}.")
        arrays[layer] = values
    if not arrays:
        raise ValueError("'activations' holds no layer.")
    return ids, arrays, coord_arrays


def check_batch(
    layout: Layout, seen_ids: set[str], arrays: Mapping, ids: np.ndarray, coords: Mapping
) -> None:
    """Raise ValueError if the batch differs from the first one or repeats a stimulus id."""
    missing = [k for k in layout.layers if k not in arrays]
    extra = [k for k in arrays if k not in layout.layers]
    if missing or extra:
        raise ValueError(
            f"Every batch must hold the same layers as the first; missing {missing}, "
            f"unexpected {extra}."
        )
    for layer, values in arrays.items():
        if values.shape[1:] != layout.layers[layer]:
            raise ValueError(
                f"Layer {layer!r}: per-stimulus shape {values.shape[1:]} differs from the "
                f"first batch's {layout.layers[layer]}."
            )
    if sorted(coords) != sorted(layout.coord_names):
        raise ValueError(
            f"Every batch must give the same coordinates as the first "
            f"({layout.coord_names}); got {list(coords)}."
        )
    if len(set(ids)) != len(ids) or not seen_ids.isdisjoint(ids):
        uniq, counts = np.unique(ids, return_counts=True)
        repeated = sorted(set(uniq[counts > 1]) | (seen_ids & set(ids)))
        raise ValueError(f"Stimulus ids must be unique in the file; repeated: {repeated[:10]}.")


def check_finite(policy: str, layer: str, values: np.ndarray, ids: np.ndarray) -> None:
    """Apply the ``nonfinite`` policy to one layer of a batch."""
    if policy == "ignore":
        return
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.any():
        message = (
            f"Layer {layer!r} has NaN or inf values for {int(bad.sum())} stimuli, e.g. "
            f"{list(ids[bad][:5])}."
        )
        if policy == "raise":
            raise ValueError(
                message + " Nothing of this batch was written; pass nonfinite='warn' to "
                "write them anyway."
            )
        warnings.warn(message, RuntimeWarning, stacklevel=3)
