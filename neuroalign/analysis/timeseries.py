"""Features for fMRI time series: clip features on the movie timeline, resampled to the TR,
z-scored per run, and a finite-impulse-response (FIR) set of delays.

The steps of voxelwise modelling (Huth et al. 2012; Dupré la Tour et al. 2022), each a plain
function over arrays:

1. :func:`timeline_features`: every event of a run's timeline places its clip's feature
   samples (at the clip's frame or window times) at run time ``onset + t - clip_offset``;
   the samples of a run are then resampled to the run's volumes by :func:`resample_to_tr`.
   Volumes with no stimulus get zeros.
2. :func:`resample_to_tr`, two methods:

   - ``"average"`` (the default): volume i is the mean of the samples in its window
     ``[i·tr, (i+1)·tr)`` (a boxcar low-pass, then one value per TR); an empty window is
     zero. It needs the samples of an event at most one TR apart.
   - ``"lanczos"``: volume i is ``Σ_j L((t_i − t_j) / tr) · dt / tr · x_j`` at the window
     centres ``t_i = (i + ½)·tr``, with ``L(u) = sinc(u) · sinc(u / 3)`` for ``|u| < 3``
     (Lanczos with 3 lobes, cutoff at the TR's Nyquist frequency, as voxelwise modelling's
     ``lanczosinterp2D``) and ``dt`` the median sample spacing, so that a constant signal
     keeps its value away from the edges.

3. :func:`zscore_by_run`: each feature (or voxel) to mean 0, SD 1 within every run (a column
   constant within a run becomes 0 there).
4. :func:`delay_features`: FIR delays in seconds (e.g. 2, 4, 6, 8 → 1–4 TRs at a 2 s TR),
   each shift within a run only (the first ``d`` volumes of a run get zeros, never the end of
   the previous run); columns are delay-major: all features at the first delay, then the
   second, ….
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "RESAMPLE_METHODS",
    "clip_features",
    "delay_features",
    "delays_in_trs",
    "resample_to_tr",
    "timeline_features",
    "zscore_by_run",
]

#: how features reach the TR grid (see the module)
RESAMPLE_METHODS = ("average", "lanczos")
_LOBES = 3


def _finite_2d(x, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        x = x.reshape(len(x), -1)
    if not np.isfinite(x).all():
        raise ValueError(f"{what} holds {int((~np.isfinite(x)).sum())} NaN or infinite values")
    return x


def resample_to_tr(x, times, n_volumes: int, tr: float, method: str = "average") -> np.ndarray:
    """(n_volumes, n_features): samples ``x`` (n_samples, n_features) at ``times`` (seconds
    from the run's start) on the TR grid of one run (see the module for the methods).
    Samples outside ``[0, n_volumes · tr)`` fall outside every window (``"average"``)."""
    if method not in RESAMPLE_METHODS:
        raise ValueError(f"method must be one of {RESAMPLE_METHODS}; got {method!r}")
    x = _finite_2d(x, "features")
    times = np.asarray(times, dtype=np.float64)
    if times.shape != (len(x),):
        raise ValueError(f"{len(x)} feature samples but {times.size} sample times")
    if not np.isfinite(times).all():
        raise ValueError("the sample times hold NaN or infinite values")
    if not tr > 0:
        raise ValueError(f"tr must be > 0 seconds; got {tr}")
    out = np.zeros((n_volumes, x.shape[1]))
    if method == "average":
        window = np.floor(times / tr).astype(np.int64)
        keep = (window >= 0) & (window < n_volumes)
        counts = np.bincount(window[keep], minlength=n_volumes)
        np.add.at(out, window[keep], x[keep])
        filled = counts > 0
        out[filled] /= counts[filled, None]
        return out
    if len(times) < 2:
        raise ValueError("lanczos resampling needs at least two samples")
    dt = float(np.median(np.diff(np.sort(times))))
    centres = (np.arange(n_volumes) + 0.5) * tr
    u = (centres[:, None] - times[None, :]) / tr
    weights = np.where(np.abs(u) < _LOBES, np.sinc(u) * np.sinc(u / _LOBES), 0.0) * dt / tr
    return weights @ x


def clip_features(x, stimulus_id, times) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{stimulus_id: (times, (n_times, n_features) features)} from a time-resolved array.

    Args:
        x: (presentation, time, ...) features of clips (e.g. a layer with a ``time`` dim, or
            per-frame features); trailing dims are flattened.
        stimulus_id: (presentation,) the clips' ids.
        times: (time,) the sample times in seconds within each clip (frame or window
            centres), or (presentation, time) when clips differ.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 3:
        raise ValueError(f"clip features need (presentation, time, ...) dims; got shape {x.shape}")
    ids = np.asarray(stimulus_id).astype(str)
    if ids.shape != (len(x),):
        raise ValueError(f"{len(x)} clips but {ids.size} stimulus ids")
    t = np.asarray(times, dtype=np.float64)
    if t.shape not in ((x.shape[1],), x.shape[:2]):
        raise ValueError(f"times must be (time,) or (presentation, time) for {x.shape[:2]} clips "
                         f"× samples; got shape {t.shape}")
    t = np.broadcast_to(t, x.shape[:2])
    return {s: (t[i], x[i].reshape(x.shape[1], -1)) for i, s in enumerate(ids)}


def timeline_features(
    features: Mapping[str, tuple[np.ndarray, np.ndarray]],
    responses,
    method: str = "average",
) -> np.ndarray:
    """(time, n_features): clip features placed on a movie response's timeline, resampled to
    its volumes run by run (see the module).

    Args:
        features: {stimulus_id: (times, (n_times, n_features) array)}, e.g. from
            :func:`clip_features`; every clip of the timeline needs an entry.
        responses: a movie response with a timeline
            (:func:`neuroalign.data.movies.make_movie_responses`).
        method: one of :data:`RESAMPLE_METHODS`.
    """
    from neuroalign.data.movies import check_movie_responses, run_names

    responses = check_movie_responses(responses)
    if "event" not in responses.dims:
        raise ValueError("the movie responses have no stimulus timeline (onset, duration, "
                         "stimulus_id per event)")
    tr = float(responses.attrs["tr"])
    runs = np.asarray(responses["run"].values).astype(str)
    event_run = np.asarray(responses["event_run"].values).astype(str)
    ids = np.asarray(responses["stimulus_id"].values).astype(str).tolist()
    missing = sorted(set(ids) - set(features))
    if missing:
        raise ValueError(f"{len(missing)} clips of the timeline have no features, e.g. "
                         f"{missing[:3]}; the features have e.g. {sorted(features)[:3]}")
    widths = {features[s][1].reshape(len(features[s][1]), -1).shape[1] for s in set(ids)}
    if len(widths) != 1:
        raise ValueError(f"the clips' features differ in width: {sorted(widths)}")
    out = np.zeros((len(runs), widths.pop()))
    for run in run_names(responses):
        rows = np.flatnonzero(runs == run)
        times, values = [], []
        for e in np.flatnonzero(event_run == run):
            t, v = _event_samples(features, ids[e], float(responses["onset"].values[e]),
                                  float(responses["duration"].values[e]),
                                  float(responses["clip_offset"].values[e]), tr, method)
            times.append(t)
            values.append(v)
        if times:
            out[rows] = resample_to_tr(np.concatenate(values), np.concatenate(times), len(rows),
                                       tr, method)
    return out


def _event_samples(features, clip: str, onset: float, duration: float, offset: float,
                   tr: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    t, v = features[clip]
    t = np.asarray(t, dtype=np.float64)
    v = _finite_2d(v, f"the features of clip {clip!r}")
    if t.shape != (len(v),):
        raise ValueError(f"clip {clip!r}: {len(v)} feature samples but {t.size} sample times")
    keep = (t >= offset) & (t < offset + duration)
    if not keep.any():
        raise ValueError(f"clip {clip!r} has no feature sample between {offset} and "
                         f"{offset + duration} s, the part the timeline shows")
    order = np.argsort(t[keep], kind="stable")
    t, v = t[keep][order], v[keep][order]
    gaps = np.diff(np.r_[offset, t, offset + duration])
    if method == "average" and gaps.max() > tr + 1e-9:
        raise ValueError(f"clip {clip!r}: feature samples {gaps.max():g} s apart, sparser than the "
                         f"TR of {tr:g} s; average windows would be empty (use method='lanczos')")
    return onset + t - offset, v


def zscore_by_run(x, run) -> np.ndarray:
    """Each column to mean 0 and SD 1 within every run (0 where constant within a run)."""
    x = _finite_2d(x, "the array to z-score")
    run = np.asarray(run).astype(str)
    if run.shape != (len(x),):
        raise ValueError(f"{len(x)} rows but {run.size} run labels")
    out = np.empty_like(x)
    for r in np.unique(run).tolist():
        rows = run == r
        block = x[rows] - x[rows].mean(axis=0)
        sd = block.std(axis=0)
        out[rows] = np.divide(block, sd, out=np.zeros_like(block), where=sd > 0)
    return out


def delays_in_trs(delays: Sequence[float], tr: float) -> np.ndarray:
    """The FIR delays in seconds as whole TRs; a delay that is not a multiple of the TR, a
    negative or repeated one is an error."""
    seconds = np.asarray(delays, dtype=np.float64).ravel()
    if seconds.size == 0:
        raise ValueError("delays is empty: give the FIR delays in seconds, e.g. 2 4 6 8")
    steps = np.round(seconds / tr)
    off = np.abs(seconds / tr - steps) > 1e-6
    if off.any():
        raise ValueError(f"delays must be multiples of the TR of {tr:g} s; got {seconds[off][0]:g} s "
                         f"({seconds[off][0] / tr:.3g} TRs)")
    if (steps < 0).any() or len(np.unique(steps)) < len(steps):
        raise ValueError(f"delays must be distinct and >= 0; got {seconds.tolist()} s")
    return steps.astype(np.int64)


def delay_features(x, delays: Sequence[float], tr: float, run) -> np.ndarray:
    """(time, n_delays · n_features): ``x`` (time, n_features) shifted later by each delay
    (seconds, multiples of ``tr``) within each run, zeros before a run's first volume;
    delay-major columns. A run with no more volumes than the largest delay is an error."""
    x = _finite_2d(x, "features")
    run = np.asarray(run).astype(str)
    if run.shape != (len(x),):
        raise ValueError(f"features have {len(x)} volumes but the run labels {run.size}")
    steps = delays_in_trs(delays, tr)
    out = np.zeros((len(x), len(steps) * x.shape[1]))
    for r in np.unique(run).tolist():
        rows = np.flatnonzero(run == r)
        if len(rows) <= steps.max():
            raise ValueError(f"run {r!r} has {len(rows)} volumes, not more than the largest delay "
                             f"of {int(steps.max())} TRs ({steps.max() * tr:g} s)")
        for k, d in enumerate(steps):
            cols = slice(k * x.shape[1], (k + 1) * x.shape[1])
            out[rows[d:], cols] = x[rows[:len(rows) - d]]
    return out
