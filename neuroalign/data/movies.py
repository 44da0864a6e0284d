"""Brain data for movies: continuous fMRI time series (``time × neuroid``) and their timeline.

A *movie response* is an xarray Dataset:

- ``bold`` (time, neuroid), float64: one row per volume, the runs one after the other (each
  run's volumes contiguous, in acquisition order).
- on ``time``: ``run`` (str, the run of each volume) and ``run_time`` (seconds from the start
  of the run's first volume: volume i of a run starts at ``i * tr``).
- on ``neuroid`` (one voxel, vertex or ROI average): ``neuroid_id``, optionally ``roi``,
  ``stream`` (e.g. ``"ventral"``, ``"dorsal"``, ``"lateral"``) and ``subject``.
- the **stimulus timeline**, one row per event (a clip or movie segment shown in a run), on
  dim ``event``, with BIDS ``events.tsv`` names: ``event_run``, ``onset`` (seconds from the
  run's start), ``duration`` (seconds), ``stimulus_id`` (the clip, as in the activation
  file) and ``clip_offset`` (seconds into the clip at ``onset``; 0 unless a clip is shown
  from its middle). Clip time ``t`` of an event is run time ``onset + t - clip_offset``, for
  ``clip_offset <= t < clip_offset + duration``. A continuous movie is one event per run (its
  segment as one ``stimulus_id``, ``clip_offset`` where the run's segment starts).
- attribute ``tr``: the repetition time in seconds.

Runs that repeat the same stimuli (a repeated test run) have equal timelines and lengths;
:func:`neuroalign.analysis.movie_encoding.movie_encoding` averages them and derives noise
ceilings. :func:`read_movie_responses` reads netCDF (this layout) and ``.npz`` (the keys of
:data:`NPZ_KEYS`); :func:`write_movie_responses` writes netCDF through a temporary name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from neuroalign.data.assemblies import write_netcdf

__all__ = [
    "CLIP_FEATURE_KEYS",
    "NPZ_KEYS",
    "TIMELINE_FIELDS",
    "check_movie_responses",
    "make_movie_responses",
    "read_clip_features",
    "read_movie_responses",
    "run_names",
    "select_runs",
    "timeline_from_events",
    "write_movie_responses",
]

#: the timeline's variables on dim ``event`` (``clip_offset`` may be left out: 0)
TIMELINE_FIELDS = ("event_run", "onset", "duration", "stimulus_id", "clip_offset")
#: the keys of an ``.npz`` of clip features (:func:`read_clip_features`)
CLIP_FEATURE_KEYS = ("features", "stimulus_id", "time")
#: the keys an ``.npz`` movie response holds: required ``bold``, ``run``, ``tr``; the others
#: are optional (``neuroid_id``/``roi``/``stream``/``subject`` one per neuroid, the timeline's
#: one per event)
NPZ_KEYS = ("bold", "run", "tr", "neuroid_id", "roi", "stream", "subject", *TIMELINE_FIELDS)


def make_movie_responses(
    bold,
    run: Sequence | np.ndarray,
    tr: float,
    *,
    neuroid_id: Sequence | np.ndarray | None = None,
    roi: str | Sequence[str] | None = None,
    stream: str | Sequence[str] | None = None,
    subject: str | Sequence[str] | None = None,
    timeline: Mapping[str, Sequence] | None = None,
    name: str = "movie responses",
) -> xr.Dataset:
    """A movie response from a (time, neuroid) array (see the module for the layout).

    Args:
        bold: (time, neuroid) values, the runs one after the other.
        run: the run of each volume (any labels; stored as str).
        tr: the repetition time in seconds.
        neuroid_id: one id per neuroid (default ``"0"``, ``"1"``, …).
        roi, stream, subject: one value for all neuroids or one per neuroid (optional).
        timeline: {field: one value per event} with the fields of :data:`TIMELINE_FIELDS`
            (``clip_offset`` optional), e.g. the columns of a BIDS ``events.tsv`` with the run
            added; a pandas DataFrame works.
        name: what error messages call it (e.g. the file).
    """
    values = np.asarray(bold, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"{name}: bold must be 2-D (time, neuroid); got shape {values.shape}")
    runs = np.asarray(run).astype(str)
    if runs.shape != (len(values),):
        raise ValueError(f"{name}: run has {runs.size} labels for {len(values)} volumes")
    ds = xr.Dataset({"bold": (("time", "neuroid"), values)}, attrs={"tr": float(tr)})
    ds = ds.assign_coords(run=("time", runs), run_time=("time", _run_time(runs, float(tr))))
    n = values.shape[1]
    ds = ds.assign_coords(neuroid_id=("neuroid", np.arange(n).astype(str) if neuroid_id is None
                                      else np.asarray(neuroid_id).astype(str)))
    for key, value in (("roi", roi), ("stream", stream), ("subject", subject)):
        if value is not None:
            try:
                labels = np.broadcast_to(np.asarray(value).astype(str), (n,))
            except ValueError:
                raise ValueError(f"{name}: {key} has {np.size(value)} labels for {n} neuroids") from None
            ds = ds.assign_coords({key: ("neuroid", labels)})
    if timeline is not None:
        fields = {k: np.asarray(timeline[k]) for k in TIMELINE_FIELDS if k in timeline}
        missing = [k for k in TIMELINE_FIELDS[:4] if k not in fields]
        if missing:
            raise ValueError(f"{name}: the timeline lacks {missing}; it needs {TIMELINE_FIELDS[:4]}")
        fields.setdefault("clip_offset", np.zeros(len(fields["onset"])))
        sizes = {k: v.shape for k, v in fields.items()}
        if len(set(sizes.values())) != 1 or len(next(iter(sizes.values()))) != 1:
            raise ValueError(f"{name}: the timeline's fields need one value per event; got {sizes}")
        for k in ("event_run", "stimulus_id"):
            fields[k] = fields[k].astype(str)
        for k in ("onset", "duration", "clip_offset"):
            fields[k] = fields[k].astype(np.float64)
        ds = ds.assign_coords({k: ("event", v) for k, v in fields.items()})
    ds.attrs["name"] = name
    return check_movie_responses(ds, name)


def _run_time(runs: np.ndarray, tr: float) -> np.ndarray:
    out = np.empty(len(runs))
    for r in _run_order(runs):
        where = np.flatnonzero(runs == r)
        out[where] = np.arange(len(where)) * tr
    return out


def _run_order(runs: np.ndarray) -> list[str]:
    """The distinct run labels in order of first appearance."""
    _, first = np.unique(runs, return_index=True)
    return [str(runs[i]) for i in np.sort(first)]


def run_names(responses: xr.Dataset) -> list[str]:
    """The runs of a movie response in acquisition order."""
    return _run_order(np.asarray(responses["run"].values).astype(str))


def select_runs(responses: xr.Dataset, runs: Sequence[str]) -> xr.Dataset:
    """The volumes and timeline events of ``runs`` (in the responses' order)."""
    runs = [str(r) for r in ([runs] if isinstance(runs, str) else runs)]
    unknown = [r for r in runs if r not in run_names(responses)]
    if unknown:
        raise ValueError(f"runs {unknown} are not in the movie responses ({run_names(responses)})")
    out = responses.isel(time=np.isin(np.asarray(responses["run"].values).astype(str), runs))
    if "event" in out.dims:
        out = out.isel(event=np.isin(np.asarray(out["event_run"].values).astype(str), runs))
    return check_movie_responses(out)


def check_movie_responses(ds: xr.Dataset, name: str | None = None) -> xr.Dataset:
    """The movie response, or a one-line ValueError saying what is wrong (naming the run,
    neuroid or event).

    Rules: ``bold`` (time, neuroid) finite; ``run`` on ``time`` with each run contiguous;
    ``tr`` > 0; a timeline, if any, naming known runs, with finite onsets, positive durations
    and events inside their run.
    """
    name = name or str(ds.attrs.get("name", "movie responses"))
    if "bold" not in ds or set(ds["bold"].dims) != {"time", "neuroid"}:
        raise ValueError(f"{name}: needs a variable 'bold' with dims (time, neuroid)")
    ds = ds.transpose("time", "neuroid", ...)
    tr = float(ds.attrs.get("tr", np.nan))
    if not tr > 0:
        raise ValueError(f"{name}: needs the attribute 'tr' (seconds, > 0); got {ds.attrs.get('tr')}")
    if "run" not in ds.coords or ds["run"].dims != ("time",):
        raise ValueError(f"{name}: needs a 'run' coordinate on 'time'")
    runs = np.asarray(ds["run"].values).astype(str)
    order = _run_order(runs)
    starts = np.flatnonzero(np.r_[True, runs[1:] != runs[:-1]])
    if len(starts) != len(order):
        raise ValueError(f"{name}: the volumes of each run must be contiguous; runs {order} come in "
                         f"{len(starts)} blocks")
    bold = np.asarray(ds["bold"].values)
    bad = ~np.isfinite(bold)
    if bad.any():
        t, n = np.argwhere(bad)[0]
        raise ValueError(f"{name}: bold holds {int(bad.sum())} NaN or infinite values, e.g. run "
                         f"{str(runs[t])!r} volume {int(t - starts[order.index(runs[t])])}, neuroid "
                         f"{str(ds['neuroid_id'].values[n]) if 'neuroid_id' in ds.coords else n!r}")
    if "event" in ds.dims:
        missing = [k for k in TIMELINE_FIELDS if k not in ds.coords and k not in ds]
        if missing:
            raise ValueError(f"{name}: the timeline lacks {missing}")
        event_run = np.asarray(ds["event_run"].values).astype(str).tolist()
        onset, duration = ds["onset"].values, ds["duration"].values
        length = {r: (runs == r).sum() * tr for r in order}
        for i, r in enumerate(event_run):
            what = f"{name}: event {i} ({ds['stimulus_id'].values[i]!s}, run {r!r})"
            if r not in length:
                raise ValueError(f"{what} names a run the bold does not have ({order})")
            if not (np.isfinite(onset[i]) and np.isfinite(duration[i]) and duration[i] > 0
                    and onset[i] >= 0 and np.isfinite(ds["clip_offset"].values[i])):
                raise ValueError(f"{what}: onset {onset[i]} and duration {duration[i]} must be "
                                 "finite, onset >= 0, duration > 0")
            if onset[i] >= length[r]:
                raise ValueError(f"{what} starts at {onset[i]} s, after the run's {length[r]} s")
    return ds


def read_movie_responses(path: str | Path) -> xr.Dataset:
    """Read a movie response from netCDF (the layout of the module) or ``.npz``.

    An ``.npz`` holds the keys of :data:`NPZ_KEYS`: ``bold`` (time, neuroid) float, ``run``
    (time,) labels, ``tr`` (a scalar, seconds); optionally ``neuroid_id``, ``roi``, ``stream``,
    ``subject`` (one per neuroid) and the timeline ``event_run``, ``onset``, ``duration``,
    ``stimulus_id``, ``clip_offset`` (one per event; ``clip_offset`` optional). Store strings
    as unicode arrays (``np.array([...], dtype=str)``); object arrays need pickle and are
    refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Movie responses file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".nc":
        with xr.open_dataset(path) as ds:
            ds = ds.load()
        ds.attrs["name"] = str(path)
        return check_movie_responses(ds, str(path))
    if suffix != ".npz":
        raise ValueError(f"{path}: movie responses are read from .nc or .npz files")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    missing = [k for k in NPZ_KEYS[:3] if k not in arrays]
    if missing:
        raise ValueError(f"{path}: lacks {missing}; an .npz movie response holds {NPZ_KEYS[:3]} "
                         f"(it has {sorted(arrays)})")
    unknown = sorted(set(arrays) - set(NPZ_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; the keys are {NPZ_KEYS}")
    timeline = {k: arrays[k] for k in TIMELINE_FIELDS if k in arrays} or None
    return make_movie_responses(
        arrays["bold"], arrays["run"], float(arrays["tr"]), neuroid_id=arrays.get("neuroid_id"),
        roi=arrays.get("roi"), stream=arrays.get("stream"), subject=arrays.get("subject"),
        timeline=timeline, name=str(path))


def write_movie_responses(responses: xr.Dataset, out: str | Path) -> Path:
    """Write a movie response to the netCDF file ``out`` (through a temporary name, renamed)."""
    return write_netcdf(check_movie_responses(responses), out)


def timeline_from_events(events: Mapping[str, str | Path], stimulus_column: str = "stim_file"
                         ) -> dict[str, np.ndarray]:
    """The stimulus timeline from BIDS ``events.tsv`` files, one per run.

    Args:
        events: {run: path of the run's ``*_events.tsv``} (tab-separated, ``n/a`` for
            missing values) with the columns ``onset``, ``duration`` and ``stimulus_column``
            (the clip's id as in the features; BIDS's ``stim_file`` by default), optionally
            ``clip_offset``. Rows without a stimulus are left out.
        stimulus_column: the column naming the clip.

    Returns:
        {field: one value per event} for ``make_movie_responses(timeline=...)``.
    """
    import pandas as pd

    rows = []
    for run, path in events.items():
        table = pd.read_csv(path, sep="\t", na_values="n/a", keep_default_na=False, dtype=str)
        missing = [c for c in ("onset", "duration", stimulus_column) if c not in table.columns]
        if missing:
            raise ValueError(f"{path}: lacks the columns {missing}; it has {list(table.columns)}")
        table = table[table[stimulus_column].notna()]
        try:
            onset, duration = table["onset"].astype(float), table["duration"].astype(float)
            offset = (table["clip_offset"].astype(float) if "clip_offset" in table.columns
                      else pd.Series(0.0, index=table.index))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        rows.append(pd.DataFrame({"event_run": str(run), "onset": onset, "duration": duration,
                                  "stimulus_id": table[stimulus_column], "clip_offset": offset}))
    if not rows:
        raise ValueError("no events files given")
    timeline = pd.concat(rows, ignore_index=True)
    return {k: timeline[k].to_numpy() for k in TIMELINE_FIELDS}


def read_clip_features(path: str | Path, variable: str | None = None,
                       layer: str | None = None) -> dict:
    """Time-resolved clip features from a file, as {stimulus_id: (times, (n_times, n_features))}
    for :func:`neuroalign.analysis.timeseries.timeline_features`.

    An ``.npz`` holds :data:`CLIP_FEATURE_KEYS`: ``features`` (presentation, time, ...),
    ``stimulus_id`` (presentation,) and ``time`` (time,) or (presentation, time), the sample
    times in seconds within each clip (frame or window centres). A netCDF holds one variable
    (or ``variable``) with dims ``(presentation, time, ...)``, a ``stimulus_id`` coordinate on
    ``presentation`` and a ``time`` coordinate in seconds. With ``layer``, ``path`` is an
    activation file and the layer must keep a ``time`` dim (``presentation × time × ...``,
    the frame times as its ``time`` coordinate).
    """
    from neuroalign.analysis.timeseries import clip_features

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Clip features file {path} does not exist.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                missing = [k for k in CLIP_FEATURE_KEYS if k not in f.files]
                if missing:
                    raise ValueError(f"lacks {missing}; clip features hold {CLIP_FEATURE_KEYS}")
                return clip_features(f["features"], f["stimulus_id"], f["time"])
        if suffix != ".nc":
            raise ValueError("clip features are read from .npz or .nc files")
        if layer is not None:
            from neuroalign.activations import layer_activation, open_activations

            with open_activations(path, chunks=None) as tree:
                da = layer_activation(tree, layer).load()
            if da.dims[1] != "time" or "time" not in da.coords:
                raise ValueError(f"layer {layer!r} has dims {da.dims} and no frame times: clip "
                                 "features need (presentation, time, ...) with a time coordinate")
            return clip_features(da.values, da["stimulus_id"].values, da["time"].values)
        with xr.open_dataset(path) as ds:
            names = [k for k, v in ds.data_vars.items() if v.dims[:2] == ("presentation", "time")]
            if variable is None and len(names) != 1:
                raise ValueError(f"expected one variable with dims (presentation, time, ...); "
                                 f"found {names or 'none'}")
            da = ds[variable or names[0]].load()
        if "stimulus_id" not in da.coords or "time" not in da.coords:
            raise ValueError("needs 'stimulus_id' (presentation) and 'time' coordinates")
        return clip_features(da.values, da["stimulus_id"].values, da["time"].values)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
