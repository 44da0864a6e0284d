"""Responses as data: a ``presentation × neuroid`` (× ``repetition``) xarray assembly.

Brain-Score's vocabulary: the DataArray has dims ``(presentation, neuroid)``, optionally a
third dim ``repetition`` holding each presentation's repeats (NaN where a stimulus has fewer
repeats than the longest: a NaN is a *missing repeat*, never a zero response). Coordinates:
``stimulus_id`` on ``presentation`` (unique), ``neuroid_id``, ``region`` and ``subject`` on
``neuroid``. :func:`read_assembly` reads netCDF, ``.npy``/``.npz``, MATLAB ``.mat`` and HDF5
(array files with a list of stimulus ids); :func:`write_assembly` writes netCDF through a
temporary name. RDMs from an assembly: :func:`neuroalign.data.responses.responses_to_rdms`
on :func:`average_repetitions` of it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = [
    "ARRAY_SUFFIXES",
    "average_repetitions",
    "check_assembly",
    "make_assembly",
    "n_repetitions",
    "read_assembly",
    "write_assembly",
]

#: File suffixes :func:`read_assembly` reads as plain arrays (they need ``stimulus_id``).
ARRAY_SUFFIXES = (".npy", ".npz", ".mat", ".h5", ".hdf5")
_DIMS = ("presentation", "neuroid", "repetition")


def make_assembly(
    values,
    stimulus_id: Sequence[str] | np.ndarray,
    *,
    dims: Sequence[str] | None = None,
    neuroid_id: Sequence[str] | np.ndarray | None = None,
    region: str | Sequence[str] | None = None,
    subject: str | Sequence[str] | None = None,
    name: str = "responses",
) -> xr.DataArray:
    """An assembly from an array and its stimulus ids.

    Args:
        values: a 2-D (presentation, neuroid) or 3-D (…, repetition) array, float; NaN marks
            a missing repeat.
        stimulus_id: one unique id per presentation.
        dims: the array's dim names in order when they are not ``presentation, neuroid
            [, repetition]`` (e.g. ``("neuroid", "presentation", "repetition")``).
        neuroid_id: one id per neuroid (default ``"0"``, ``"1"``, …).
        region, subject: one value for all neuroids, or one per neuroid (optional).
        name: the DataArray's name (the netCDF variable).

    Returns:
        The checked assembly, dims in canonical order, float64.
    """
    values = np.asarray(values, dtype=np.float64)
    if dims is None:
        if values.ndim not in (2, 3):
            raise ValueError(
                f"responses must be 2-D (presentation, neuroid) or 3-D (…, repetition); got "
                f"shape {values.shape}"
            )
        dims = _DIMS[: values.ndim]
    dims = tuple(dims)
    if len(dims) != values.ndim or set(dims) not in (set(_DIMS[:2]), set(_DIMS)):
        raise ValueError(f"dims {dims} do not fit responses of shape {values.shape}")
    da = xr.DataArray(values, dims=dims, name=name).transpose(*[d for d in _DIMS if d in dims])
    n_neuroid = da.sizes["neuroid"]
    coords: dict[str, tuple[str, np.ndarray]] = {
        "stimulus_id": ("presentation", np.asarray(stimulus_id).astype(str)),
        "neuroid_id": (
            "neuroid",
            np.arange(n_neuroid).astype(str) if neuroid_id is None
            else np.asarray(neuroid_id).astype(str),
        ),
    }
    for key, value in (("region", region), ("subject", subject)):
        if value is not None:
            coords[key] = ("neuroid", np.broadcast_to(np.asarray(value).astype(str), (n_neuroid,)))
    try:
        da = da.assign_coords(coords)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from err
    return check_assembly(da)


def check_assembly(assembly: xr.DataArray, name: str = "responses") -> xr.DataArray:
    """The assembly in canonical dim order, or a one-line ValueError saying what is wrong.

    Rules: dims ``presentation, neuroid`` and optionally ``repetition``; a unique
    ``stimulus_id`` on ``presentation``; no presentation with a neuroid that has no repeat at
    all (an all-NaN row is an error, a missing repeat is not).
    """
    dims = set(assembly.dims)
    if dims not in (set(_DIMS[:2]), set(_DIMS)):
        raise ValueError(
            f"{name}: an assembly has dims (presentation, neuroid[, repetition]); got "
            f"{tuple(assembly.dims)}"
        )
    assembly = assembly.transpose(*[d for d in _DIMS if d in dims])
    if "stimulus_id" not in assembly.coords or assembly["stimulus_id"].dims != ("presentation",):
        raise ValueError(f"{name}: needs a 'stimulus_id' coordinate on 'presentation'")
    ids = np.asarray(assembly["stimulus_id"].values).astype(str)
    unique, counts = np.unique(ids, return_counts=True)
    if len(unique) < len(ids):
        raise ValueError(
            f"{name}: stimulus ids repeat along 'presentation' ({unique[counts > 1][:5].tolist()}"
            "); put repeats on a 'repetition' dim"
        )
    values = np.asarray(assembly.values)
    present = ~np.isnan(values)
    if "repetition" in dims:
        present = present.any(axis=2)
    if not present.all():
        p, n = np.argwhere(~present)[0]
        raise ValueError(
            f"{name}: {int((~present).sum())} (stimulus, neuroid) pairs have no response, e.g. "
            f"stimulus {str(ids[p])!r}, neuroid {n}"
        )
    return assembly


def n_repetitions(assembly: xr.DataArray) -> np.ndarray:
    """(presentation, neuroid) int: how many repeats each response really has (non-NaN)."""
    if "repetition" not in assembly.dims:
        return np.ones((assembly.sizes["presentation"], assembly.sizes["neuroid"]), dtype=int)
    values = assembly.transpose("presentation", "neuroid", "repetition").values
    return (~np.isnan(values)).sum(axis=2)


def average_repetitions(assembly: xr.DataArray) -> xr.DataArray:
    """(presentation, neuroid): the mean over each response's real repeats (NaNs skipped)."""
    if "repetition" not in assembly.dims:
        return assembly
    values = assembly.transpose("presentation", "neuroid", "repetition").values
    total = np.nansum(values, axis=2)
    return assembly.isel(repetition=0, drop=True).copy(data=total / n_repetitions(assembly))


def _read_array(path: Path, variable: str | None) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path)
    if suffix == ".npz":
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    elif suffix == ".mat":
        import scipy.io

        arrays = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    else:
        import h5py

        with h5py.File(path, "r") as f:
            arrays = {}
            f.visititems(
                lambda key, obj: arrays.__setitem__(key, obj[()])
                if isinstance(obj, h5py.Dataset) and obj.ndim in (2, 3) else None
            )
    numeric = {k: v for k, v in arrays.items() if np.asarray(v).dtype.kind in "fiu"}
    if variable is not None:
        if variable not in arrays:
            raise ValueError(f"{path}: no array {variable!r}; it holds {sorted(arrays)}")
        return np.asarray(arrays[variable])
    candidates = [k for k, v in numeric.items() if np.ndim(v) in (2, 3)]
    if len(candidates) != 1:
        raise ValueError(
            f"{path}: expected one 2-D or 3-D numeric array; found {candidates or 'none'}. "
            "Name it with variable=..."
        )
    return np.asarray(numeric[candidates[0]])


def _read_ids(stimulus_id) -> np.ndarray:
    if isinstance(stimulus_id, (str, Path)):
        lines = Path(stimulus_id).read_text(encoding="utf-8").splitlines()
        return np.array([line.strip() for line in lines if line.strip()])
    return np.asarray(stimulus_id).astype(str)


def read_assembly(
    path: str | Path,
    stimulus_id: Sequence[str] | np.ndarray | str | Path | None = None,
    *,
    variable: str | None = None,
    dims: Sequence[str] | None = None,
    region: str | Sequence[str] | None = None,
    subject: str | Sequence[str] | None = None,
) -> xr.DataArray:
    """Read an assembly from netCDF, ``.npy``/``.npz``, MATLAB ``.mat`` or HDF5.

    Args:
        path: the file. A netCDF (``.nc``) holds the assembly with its coordinates; the other
            formats hold a plain array and need ``stimulus_id``.
        stimulus_id: the array's stimulus ids (a sequence, or a text file with one id a line),
            in the order of its presentation axis.
        variable: the netCDF variable / ``.npz`` key / ``.mat`` variable / HDF5 dataset
            (default: the only candidate).
        dims: an array file's dim names in order (default ``presentation, neuroid[,
            repetition]``).
        region, subject: neuroid coords for array files (one value or one per neuroid).

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown suffix, no or several candidate arrays, ids that do not fit —
            the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Responses file {path} does not exist.")
    if path.suffix.lower() == ".nc":
        with xr.open_dataset(path) as ds:
            names = [k for k, v in ds.data_vars.items() if {"presentation", "neuroid"} <= set(v.dims)]
            if variable is None and len(names) != 1:
                raise ValueError(
                    f"{path}: expected one variable with dims (presentation, neuroid); found "
                    f"{names or 'none'}. Name it with variable=..."
                )
            da = ds[variable or names[0]].load()
        return check_assembly(da, str(path))
    if path.suffix.lower() not in ARRAY_SUFFIXES:
        raise ValueError(
            f"{path}: responses are read from .nc or {', '.join(ARRAY_SUFFIXES)} files"
        )
    if stimulus_id is None:
        raise ValueError(f"{path}: an array file needs its stimulus ids (stimulus_id=...)")
    try:
        return make_assembly(
            _read_array(path, variable), _read_ids(stimulus_id), dims=dims, region=region,
            subject=subject, name=path.stem,
        )
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def write_assembly(assembly: xr.DataArray, out: str | Path) -> Path:
    """Write an assembly to the netCDF file ``out`` (through ``<out>.part``, then renamed)."""
    return write_netcdf(check_assembly(assembly), out)


def write_netcdf(data: xr.DataArray | xr.Dataset, out: str | Path) -> Path:
    """Write ``data`` to the netCDF file ``out`` through ``<out>.part-<pid>``, then rename."""
    out = Path(out)
    tmp = out.with_name(f"{out.name}.part-{os.getpid()}")
    try:
        data.to_netcdf(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
