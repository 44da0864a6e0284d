"""Checks before continuing an interrupted file or keeping a finished one (``resume``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neuroalign.activations import ActivationWriter, attr_differences, partial_path

__all__ = ["check_output", "check_resumed", "finished_file"]


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


def check_resumed(writer: ActivationWriter, source, names: list[str], lenient: bool) -> None:
    k = writer.n_written
    done = writer.stimulus_ids
    expected = source.stimulus_id[:k]
    if k > len(source) or not np.array_equal(done, expected):
        if k > len(source):
            detail = f"it holds {k} stimuli, the set only {len(source)}"
        else:
            i = int(np.flatnonzero(done != expected)[0])
            detail = f"stimulus {i} is {str(done[i])!r} in the file but {str(expected[i])!r} in the set"
        raise ValueError(
            f"Cannot resume {writer.partial_path}: its {k} stimulus ids are not the first {k} "
            f"of the stimulus set ({detail}). Delete it or use --overwrite (overwrite=True)."
        )
    stored = list(writer.layer_shapes)
    # default leaves (lenient): the file lacks the leaves that never ran
    differs = not set(stored) <= set(names) if lenient else stored != list(names)
    if stored and differs:
        raise ValueError(
            f"Cannot resume {writer.partial_path}: it holds the layers {stored}, this run asks "
            f"for {list(names)}. Delete it or use --overwrite (overwrite=True)."
        )


def finished_file(path: Path, source, attrs: dict) -> bool:
    """For resume: True if ``path`` is a finished file of this set with these settings."""
    import netCDF4

    with netCDF4.Dataset(path) as ds:
        stored = {k: ds.getncattr(k) for k in ds.ncattrs()}
        ids = np.asarray(ds["stimulus_id"][:]).astype(str)
    differ = attr_differences(attrs, stored)
    if differ or not np.array_equal(ids, source.stimulus_id):
        why = "; ".join(differ) if differ else "its stimulus ids differ from the set's"
        raise ValueError(
            f"{path} exists but was written with other settings ({why}); delete it or "
            "use --overwrite (overwrite=True)."
        )
    return True
