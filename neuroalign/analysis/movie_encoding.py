"""Encoding models of fMRI time series during movies, split by run; banded variance partitioning.

The voxelwise-modelling recipe on a movie response
(:func:`neuroalign.data.movies.make_movie_responses`) and features on its TR grid (e.g. from
:func:`neuroalign.analysis.timeseries.timeline_features`):

- the features are z-scored per run, then given the FIR ``delays``
  (:func:`~neuroalign.analysis.timeseries.delay_features`); each neuroid's ``bold`` is
  z-scored per run. No intercept is fitted (every run has mean 0).
- Outer splits are by **run**: leave-one-run-out (``test_runs=None``; every run is predicted
  once by the model not trained on it) or the given ``test_runs`` held out once. No volume of
  a test run is ever in the training data, nor in the choice of the penalty.
- **Repeats**: runs of equal length whose features are equal (the same stimulus sequence,
  :func:`repeat_groups`) are one group: leave-one-run-out holds them out together and
  scores the prediction against their average, the inner folds keep them together, and
  ``test_runs`` must hold out all of a group (else the stimuli of a test run would be in the
  training runs: a one-line error).
- The penalty (one per neuroid; per feature space and neuroid for banded ridge) is chosen by
  leave-one-run-out (one group at a time) over the training runs, so at least two training
  groups, through himalaya: ``RidgeCV`` / ``KernelRidgeCV`` for one feature space,
  ``BandedRidgeCV`` / ``MultipleKernelRidgeCV`` (random search, ``n_iter`` draws) for
  several; the kernel (dual) solvers when the delayed features exceed half the training
  volumes, as in :mod:`neuroalign.analysis.encoding`.
- **Noise ceilings**: when ``test_runs`` are two or more repeats, the scores are also divided
  by the ceilings of :func:`neuroalign.analysis.reliability.noise_ceilings` computed from the
  repeats (volumes as presentations): ``r_corrected = r / sqrt(split_half_reliability)``,
  ``r2_corrected = r2 / (ncsnr_ceiling / 100)``.
- Scores per neuroid: Pearson ``r`` and ``r2`` (1 − SS_res / SS_tot, can be negative)
  within each split's held-out runs (``r_split``, ``r2_split``), then averaged over splits
  (``r``, ``r2``; voxelwise modelling's mean over test runs). They are not computed on the
  runs' pooled predictions: each run's comes from a model trained on the other runs, and
  pooled r was biased below zero on pure noise (−0.04 over 20 seeds, per run −0.002 ± 0.002).
  :func:`summarize_neuroids` takes their median (or mean) per ``stream`` or ``roi``.

:func:`movie_variance_partitioning` fits the joint banded model of 2–6 feature spaces and each
model without one space, on the same splits: ``r2_unique`` = joint R² − R² without the space,
``r2_shared`` = joint R² − Σ unique (with two spaces, the R² both explain), as
:func:`neuroalign.analysis.banded.banded_encoding` defines them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr
from sklearn.model_selection import PredefinedSplit

from neuroalign.analysis.encoding import ALPHAS, _himalaya_backend, _r2, pearson_r
from neuroalign.analysis.timeseries import delay_features, zscore_by_run

__all__ = ["DELAYS", "movie_encoding", "movie_variance_partitioning", "repeat_groups",
           "run_splits", "summarize_neuroids"]

#: the default FIR delays in seconds (voxelwise modelling's 1–4 TRs at a 2 s TR)
DELAYS = (2.0, 4.0, 6.0, 8.0)
_MAX_SPACES = 6


def run_splits(run, test_runs: Sequence[str] | None = None,
               groups=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The outer splits as (train rows, test rows) index arrays: leave-one-run-out, or one
    split holding out ``test_runs``.

    ``groups`` (one label per row, default the run): runs of one group — repeats of one
    stimulus sequence — are held out together by leave-one-run-out, and ``test_runs`` must
    hold out whole groups (else a test run's stimuli would be in the training runs).
    """
    run = np.asarray(run).astype(str)
    group = run if groups is None else np.asarray(groups).astype(str)
    if group.shape != run.shape:
        raise ValueError(f"{run.size} run labels but {group.size} group labels")
    order = list(dict.fromkeys(run.tolist()))
    group_of = {r: str(group[run == r][0]) for r in order}
    if test_runs is None:
        held = [[r for r in order if group_of[r] == g] for g in dict.fromkeys(group_of.values())]
    else:
        test = [str(r) for r in ([test_runs] if isinstance(test_runs, str) else test_runs)]
        unknown = [r for r in test if r not in order]
        if unknown or not test:
            raise ValueError(f"test runs {unknown or test} are not runs of the responses ({order})")
        split_up = [r for r in order if r not in test and group_of[r] in {group_of[t] for t in test}]
        if split_up:
            raise ValueError(f"training runs {split_up} repeat the stimuli of test runs {test}; "
                             "hold the repeats out together")
        held = [test]
    splits = []
    for runs in held:
        is_test = np.isin(run, runs)
        if len(set(group[~is_test])) < 2:
            raise ValueError(f"holding out {runs} leaves {sorted(set(run[~is_test].tolist()))} to train on; "
                             "choosing the penalty by run needs at least two training runs (repeat groups)")
        splits.append((np.flatnonzero(~is_test), np.flatnonzero(is_test)))
    return splits


def repeat_groups(run, features: Mapping) -> np.ndarray:
    """One label per row: runs of equal length whose features (every set) are equal share
    one, ``"rep-1+rep-2"``; any other run is its own."""
    run = np.asarray(run).astype(str)
    order = list(dict.fromkeys(run.tolist()))
    rows = {r: np.flatnonzero(run == r) for r in order}
    arrays = [np.asarray(x) for x in features.values()]
    label: dict[str, str] = {}
    for i, r in enumerate(order):
        if r in label:
            continue
        same = [r] + [q for q in order[i + 1:] if q not in label and len(rows[q]) == len(rows[r])
                      and all(np.allclose(x[rows[q]], x[rows[r]]) for x in arrays)]
        label.update({q: "+".join(same) for q in same})
    return np.array([label[r] for r in run])


def _fit_predict(xs_train, y_train, xs_test, group_train, alphas, n_iter, solver, device, seed):
    """Held-out predictions (n_test, n_targets) and the chosen penalties (n_spaces, n_targets);
    the inner folds leave one run (repeat group) of the training rows out."""
    codes = np.unique(group_train, return_inverse=True)[1]
    cv = PredefinedSplit(codes)
    n_features = sum(x.shape[1] for x in xs_train)
    kernel = solver == "kernel" or (solver == "auto" and 2 * n_features > len(y_train))
    dtype = np.float64 if device is None else np.float32
    xs_train = [x.astype(dtype) for x in xs_train]
    xs_test = [x.astype(dtype) for x in xs_test]
    y_train = y_train.astype(dtype)
    grid = np.asarray(ALPHAS if alphas is None else alphas, dtype=np.float64)
    with _himalaya_backend(device) as backend:
        if len(xs_train) == 1:
            if kernel:
                from himalaya.kernel_ridge import KernelRidgeCV

                model = KernelRidgeCV(alphas=grid, kernel="linear", cv=cv, warn=False)
            else:
                from himalaya.ridge import RidgeCV

                model = RidgeCV(alphas=grid, cv=cv, solver_params={"warn": False})
            model.fit(xs_train[0], y_train)
            predicted = model.predict(xs_test[0])
            best = np.asarray(backend.to_numpy(model.best_alphas_), dtype=np.float64)
            # himalaya hands back the grid's values up to rounding: report the grid's own
            chosen = grid[np.abs(np.log(best)[:, None] - np.log(grid)[None]).argmin(axis=1)][None]
        else:
            params = {"alphas": grid, "n_iter": n_iter, "progress_bar": False}
            if kernel:
                from himalaya.kernel_ridge import MultipleKernelRidgeCV

                model = MultipleKernelRidgeCV(kernels="precomputed", solver_params=params, cv=cv,
                                              random_state=seed)
                model.fit(np.stack([x @ x.T for x in xs_train]), y_train)
                predicted = model.predict(np.stack([
                    t @ x.T for t, x in zip(xs_test, xs_train, strict=True)]))
            else:
                from himalaya.ridge import BandedRidgeCV

                model = BandedRidgeCV(groups="input", solver_params={**params, "warn": False},
                                      cv=cv, random_state=seed)
                model.fit(xs_train, y_train)
                predicted = model.predict(xs_test)
            chosen = np.exp(-np.asarray(backend.to_numpy(model.deltas_), dtype=np.float64))
        return np.asarray(backend.to_numpy(predicted), dtype=np.float64), chosen, kernel


def _prepared(responses, features: Mapping, delays, test_runs):
    """The checked responses, z-scored bold, runs, splits, the repeated test runs' rows
    (repetition, volume) or None, and each feature set's delayed design."""
    from neuroalign.data.movies import check_movie_responses

    responses = check_movie_responses(responses)
    tr = float(responses.attrs["tr"])
    run = np.asarray(responses["run"].values).astype(str)
    bold = np.asarray(responses["bold"].values, dtype=np.float64)
    for r in np.unique(run).tolist():
        flat = np.flatnonzero(np.ptp(bold[run == r], axis=0) == 0)
        if flat.size:
            raise ValueError(f"{flat.size} neuroid(s) are constant within run {r!r} (e.g. "
                             f"{responses['neuroid_id'].values[flat[0]]!s}); drop them before fitting")
    y = zscore_by_run(bold, run)
    designs = {}
    for name, x in features.items():
        x = np.asarray(x, dtype=np.float64)
        if len(x) != len(y):
            raise ValueError(f"features {name!r} have {len(x)} volumes; the responses have {len(y)}")
        try:
            designs[name] = delay_features(zscore_by_run(x.reshape(len(x), -1), run), delays, tr,
                                           run)
        except ValueError as err:
            raise ValueError(f"features {name!r}: {err}") from err
    group = repeat_groups(run, features)
    splits = run_splits(run, test_runs, group)
    repeats = None
    if test_runs is not None:
        held = list(dict.fromkeys(run[splits[0][1]].tolist()))
        if len(held) >= 2 and len(set(group[splits[0][1]])) == 1:
            repeats = np.stack([np.flatnonzero(run == r) for r in held])  # (repetition, time)
    return responses, y, run, group, splits, repeats, designs


def _scores(y, predicted, run, group, splits):
    """r, r2 (split, neuroid) on each split's held-out rows, never pooled over splits (see the
    module); held-out repeats of one stimulus sequence are scored on their average."""
    r, r2 = [], []
    for _, test in splits:
        held = list(dict.fromkeys(run[test].tolist()))
        if len(held) >= 2 and len(set(group[test])) == 1:
            blocks = np.stack([np.flatnonzero(run == h) for h in held])
            target, prediction = y[blocks].mean(axis=0), predicted[blocks].mean(axis=0)
        else:
            target, prediction = y[test], predicted[test]
        r.append(pearson_r(target, prediction))
        r2.append(_r2(target, prediction))
    return np.stack(r), np.stack(r2)


def _held_out(designs, names, y, group, splits, alphas, n_iter, solver, device, seed):
    predicted = np.full_like(y, np.nan)
    chosen = np.empty((len(names), len(splits), y.shape[1]))
    kernels = []
    for k, (train, test) in enumerate(splits):
        predicted[test], chosen[:, k], kernel = _fit_predict(
            [designs[n][train] for n in names], y[train], [designs[n][test] for n in names],
            group[train], alphas, n_iter, solver, device, seed)
        kernels.append(kernel)
    return predicted, chosen, "kernel" if any(kernels) else "primal"


def _result(responses, variables: dict, splits, run, repeats, attrs: dict, n_splits: int,
            seed: int, y) -> xr.Dataset:
    coords = {k: c for k, c in responses.coords.items() if c.dims == ("neuroid",)}
    held = ["+".join(sorted(set(run[test]))) for _, test in splits]
    coords["test_run"] = ("split", held)
    out = xr.Dataset(variables, coords=coords, attrs={
        **attrs, "tr": float(responses.attrs["tr"]),
        "split": "leave-one-run-out" if len(splits) > 1 else f"held-out runs {held[0]}"})
    if repeats is None:
        out.attrs["noise_ceiling"] = "none: no repeated test runs"
        return out
    from neuroalign.analysis.reliability import noise_ceilings

    trials = np.transpose(y[repeats], (1, 2, 0))  # (volume, neuroid, repetition)
    ceilings = noise_ceilings(trials, n_splits=n_splits, seed=seed)
    out = out.merge(ceilings)
    out.attrs["noise_ceiling"] = (f"split-half (Spearman-Brown) and NCSNR from {len(repeats)} "
                                  "repeated test runs (volumes as presentations)")
    return out


def movie_encoding(
    features,
    responses: xr.Dataset,
    *,
    delays: Sequence[float] = DELAYS,
    test_runs: Sequence[str] | None = None,
    alphas=None,
    solver: str = "auto",
    device: str | None = None,
    n_splits: int = 100,
    seed: int = 0,
) -> xr.Dataset:
    """Held-out encoding scores of each feature set for every neuroid of a movie response.

    Args:
        features: {name: (time, ...) features on the responses' volumes} (each fitted alone,
            like layers), or one such array (named ``"features"``).
        responses: a movie response (:mod:`neuroalign.data.movies`).
        delays: the FIR delays in seconds, multiples of the TR.
        test_runs: None (leave-one-run-out, repeats together) or the runs held out (noise
            ceilings when they are repeats of one stimulus sequence; see the module).
        alphas: the penalty grid (default :data:`~neuroalign.analysis.encoding.ALPHAS`).
        solver: ``"auto"``, ``"primal"`` or ``"kernel"``.
        device: None (numpy, float64) or a torch device (float32).
        n_splits: random splits of the split-half ceiling (repeated test runs only).
        seed: the seed of the ceilings' splits.

    Returns:
        Dataset with ``r``, ``r2`` (layer, neuroid; mean over splits), ``r_split``,
        ``r2_split`` and ``alpha`` (layer, split, neuroid), ``solver`` (layer), ``test_run`` (split) and the neuroid coords (``roi``, ``stream``,
        …); with repeated test runs also ``r_corrected``, ``r2_corrected`` and the ceilings.
    """
    if solver not in ("auto", "primal", "kernel"):
        raise ValueError(f"solver must be 'auto', 'primal' or 'kernel'; got {solver!r}")
    if not isinstance(features, Mapping):
        features = {"features": features}
    if not features:
        raise ValueError("features is empty: no feature set to fit")
    responses, y, run, group, splits, repeats, designs = _prepared(
        responses, features, delays, test_runs)
    names = list(designs)
    r, r2 = np.empty((len(names), len(splits), y.shape[1])), np.empty((len(names), len(splits), y.shape[1]))
    alpha = np.empty((len(names), len(splits), y.shape[1]))
    solvers = []
    for i, name in enumerate(names):
        predicted, chosen, used = _held_out(designs, [name], y, group, splits, alphas, 1, solver,
                                            device, seed)
        r[i], r2[i] = _scores(y, predicted, run, group, splits)
        alpha[i] = chosen[0]
        solvers.append(used)
    ln, lsn = ("layer", "neuroid"), ("layer", "split", "neuroid")
    out = _result(responses, {
        "r": (ln, r.mean(axis=1), {"long_name": "held-out Pearson r, mean over test runs"}),
        "r2": (ln, r2.mean(axis=1), {"long_name": "held-out R², mean over test runs"}),
        "r_split": (lsn, r, {"long_name": "held-out Pearson r of each split"}),
        "r2_split": (lsn, r2, {"long_name": "held-out R² of each split"}),
        "alpha": (("layer", "split", "neuroid"), alpha, {"long_name": "chosen ridge penalty"}),
        "solver": ("layer", np.array(solvers)),
    }, splits, run, repeats, {"delays": np.asarray(delays, dtype=np.float64)}, n_splits, seed, y)
    out = out.assign_coords(layer=names)
    if repeats is not None:
        out["r_corrected"] = out["r"] / np.sqrt(out["split_half_reliability"])
        out["r_corrected"].attrs["long_name"] = "r / sqrt(split-half reliability)"
        out["r2_corrected"] = out["r2"] / (out["ncsnr_ceiling"] / 100)
        out["r2_corrected"].attrs["long_name"] = "R² / (NCSNR ceiling / 100)"
    return out


def movie_variance_partitioning(
    spaces: Mapping[str, np.ndarray],
    responses: xr.Dataset,
    *,
    delays: Sequence[float] = DELAYS,
    test_runs: Sequence[str] | None = None,
    alphas=None,
    n_iter: int = 50,
    solver: str = "auto",
    device: str | None = None,
    seed: int = 0,
) -> xr.Dataset:
    """Unique and shared held-out variance of 2–6 feature spaces per neuroid (banded ridge).

    Args:
        spaces: {name: (time, ...) features on the responses' volumes}, e.g. motion and
            static features.
        responses, delays, test_runs, alphas, solver, device: as :func:`movie_encoding`.
        n_iter: himalaya's random-search draws of the spaces' relative penalties.
        seed: the seed of the random search.

    Returns:
        Dataset with ``r2_unique``, ``r2_without`` (space, neuroid), ``band_alpha`` (space,
        split, neuroid), ``r_joint``, ``r2_joint``, ``r2_shared`` (neuroid; means over
        splits), ``test_run``
        (split) and the neuroid coords; :func:`summarize_neuroids` gives them per stream.
    """
    names = list(spaces)
    if not 2 <= len(names) <= _MAX_SPACES:
        raise ValueError(f"variance partitioning takes 2 to {_MAX_SPACES} feature spaces; got "
                         f"{len(names)}")
    if solver not in ("auto", "primal", "kernel"):
        raise ValueError(f"solver must be 'auto', 'primal' or 'kernel'; got {solver!r}")
    responses, y, run, group, splits, repeats, designs = _prepared(
        responses, spaces, delays, test_runs)
    fit = (alphas, n_iter, solver, device, seed)
    predicted, band, used = _held_out(designs, names, y, group, splits, *fit)
    r_joint, r2_joint = (s.mean(axis=0) for s in _scores(y, predicted, run, group, splits))
    without = np.empty((len(names), y.shape[1]))
    for i in range(len(names)):
        rest = [n for n in names if n != names[i]]
        without[i] = _scores(y, _held_out(designs, rest, y, group, splits, *fit)[0], run, group,
                             splits)[1].mean(axis=0)
    unique = r2_joint - without
    sn = ("space", "neuroid")
    out = _result(responses, {
        "r2_unique": (sn, unique, {"long_name": "joint R² minus R² without the space"}),
        "r2_without": (sn, without, {"long_name": "held-out R² of the model without the space"}),
        "band_alpha": (("space", "split", "neuroid"), band,
                       {"long_name": "chosen ridge penalty of each space"}),
        "r_joint": ("neuroid", r_joint, {"long_name": "joint held-out r"}),
        "r2_joint": ("neuroid", r2_joint, {"long_name": "joint held-out R²"}),
        "r2_shared": ("neuroid", r2_joint - unique.sum(axis=0),
                      {"long_name": "joint R² minus the sum of the unique R²"}),
    }, splits, run, repeats, {"delays": np.asarray(delays, dtype=np.float64), "n_iter": n_iter,
                              "solver": used}, 100, seed, y)
    return out.assign_coords(space=names)


def summarize_neuroids(ds: xr.Dataset, by: str = "stream", stat: str = "median") -> xr.Dataset:
    """Every per-neuroid variable of ``ds`` reduced over the neuroids of each ``by`` label
    (a neuroid coordinate such as ``stream`` or ``roi``) by ``stat`` (``"median"`` or
    ``"mean"``, NaNs skipped), with ``n_neuroid`` per label."""
    if stat not in ("median", "mean"):
        raise ValueError(f"stat must be 'median' or 'mean'; got {stat!r}")
    if by not in ds.coords or ds[by].dims != ("neuroid",):
        raise ValueError(f"the results have no neuroid coordinate {by!r} (they have "
                         f"{[k for k, c in ds.coords.items() if c.dims == ('neuroid',)]})")
    labels = np.asarray(ds[by].values).astype(str)
    groups = list(dict.fromkeys(labels))
    names = [v for v in ds.data_vars if "neuroid" in ds[v].dims]
    parts = []
    for g in groups:
        part = ds[names].isel(neuroid=labels == g).drop_vars(
            [k for k, c in ds.coords.items() if "neuroid" in c.dims])
        parts.append(getattr(part, stat)("neuroid", skipna=True, keep_attrs=True))
    out = xr.concat(parts, dim=by).assign_coords({by: groups})
    out["n_neuroid"] = (by, np.array([(labels == g).sum() for g in groups]))
    out.attrs = {**ds.attrs, "summary": f"{stat} over the neuroids of each {by}"}
    return out
