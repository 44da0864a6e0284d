"""Checks before continuing an interrupted file or keeping a finished one (``resume``)."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np

from neuroalign.activations import ActivationWriter, attr_differences, partial_path

__all__ = ["check_output", "check_existing", "check_resumed"]


def check_output(out: Path, resume: bool, overwrite: bool) -> Path:
    """``out``, after refusing to touch existing work unless ``resume`` or ``overwrite`` says so."""
    if resume and overwrite:
        raise ValueError("'resume' and 'overwrite' exclude each other; choose one.")
    partial = partial_path(out)
    if partial.exists() and not (resume or overwrite):
        raise FileExistsError(
            f"{partial} holds an interrupted extraction: --resume (resume=True) continues it, "
            "--overwrite (overwrite=True) discards it."
        )
    if out.exists() and not (resume or overwrite):
        raise FileExistsError(
            f"{out} exists: --resume (resume=True) keeps it if it was written with these "
            "settings, --overwrite (overwrite=True) replaces it."
        )
    return out


def check_existing(out: Path, expected, attrs: dict, names: list[str], lenient: bool) -> bool:
    """For ``resume``: check the file to continue (``<out>.partial``, else a finished ``out``)
    against this run (``expected``: the stimulus ids it is to hold). True when ``out`` is
    finished and may be kept as it is."""
    partial = partial_path(out)
    if partial.exists():
        stored = _root_attrs(partial)
        if stored is not None:  # else the writer says why it cannot be opened
            _check_settings(partial, stored, attrs, names, lenient)
        return False
    if not out.exists():
        return False
    try:
        with netCDF4.Dataset(out) as ds:
            stored = {k: ds.getncattr(k) for k in ds.ncattrs()}
            ids = np.asarray(ds["stimulus_id"][:]).astype(str)
    except (OSError, IndexError):  # IndexError: netCDF4's "no such variable"
        raise ValueError(f"{out} exists but is not a readable activation file.") from None
    _check_settings(out, stored, attrs, names, lenient)
    if not np.array_equal(ids, np.asarray(expected).astype(str)):
        raise ValueError(
            f"{out} exists but its stimulus ids differ from the set's; delete it or use "
            "--overwrite (overwrite=True)."
        )
    return True


def _root_attrs(path: Path) -> dict | None:
    try:
        with netCDF4.Dataset(path) as ds:
            return {k: ds.getncattr(k) for k in ds.ncattrs()}
    except OSError:
        return None


def _check_settings(path: Path, stored: dict, attrs: dict, names: list[str], lenient: bool):
    """ValueError naming every setting (attribute, layers, weights) in which ``path`` differs."""
    differ = attr_differences(attrs, stored)
    layers = [name for name in str(stored.get("layers", "")).split(",") if name]
    # default leaves (lenient): the file lacks the leaves that never ran
    if layers and (not set(layers) <= set(names) if lenient else layers != list(names)):
        differ.append(f"layers: file {layers}, now {list(names)}")
    weights = [d for d in differ if d.startswith("weights_sha256:")]
    if weights:
        why = f"the model's weights differ from the file's ({weights[0]})"
    elif differ:
        why = "it was written with other settings (" + "; ".join(differ) + ")"
    else:
        return
    raise ValueError(
        f"Cannot resume {path}: {why}. Delete it or use --overwrite (overwrite=True)."
    )


def check_resumed(writer: ActivationWriter, ids) -> None:
    """The stimulus ids of a reopened file must be the first ones of ``ids`` (those it is to
    hold: the stimulus set's, or a shard's share of them)."""
    k = writer.n_written
    done = writer.stimulus_id
    expected = np.asarray(ids)[:k]
    if k > len(ids) or not np.array_equal(done, expected):
        if k > len(ids):
            detail = f"it holds {k} stimuli, the set only {len(ids)}"
        else:
            i = int(np.flatnonzero(done != expected)[0])
            detail = f"stimulus {i} is {str(done[i])!r} in the file but {str(expected[i])!r} in the set"
        raise ValueError(
            f"Cannot resume {writer.partial_path}: its {k} stimulus ids are not the first {k} "
            f"of the stimulus set ({detail}). Delete it or use --overwrite (overwrite=True)."
        )
