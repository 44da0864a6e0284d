"""Banded ridge: the unique and shared explained variance of 2–6 feature spaces per neuroid.

A joint model predicts each neuroid from several feature spaces (layers or models) at once,
with one ridge penalty per space and per neuroid (a *band*), chosen by himalaya's random
search over the inner folds: ``BandedRidgeCV`` (primal) when the spaces together have at most
half as many features as training stimuli, else ``MultipleKernelRidgeCV`` on one precomputed
linear kernel per space (dual), the rule of :class:`neuroalign.analysis.encoding.RidgeEncoder`.
himalaya scales space i by ``exp(delta_i / 2)`` under a unit penalty, which is ridge with the
penalty ``alpha_i = exp(-delta_i)`` on space i: that is the band penalty reported.

Two readings of the held-out variance, both on the pooled out-of-fold predictions of the same
outer K-fold over stimuli as :func:`~neuroalign.analysis.encoding.layerwise_encoding`:

- ``r2_split`` (the product measure, himalaya's ``r2_score_split``): with ``y`` centred on
  its mean, ``p_i`` space i's part of the joint prediction and ``p`` the whole prediction,
  ``r2_split_i = (2 y·p_i − p_i·p) / y·y``; a share can be negative. The spaces' shares and
  ``r2_split_intercept`` (the share of the intercepts, which differ between outer folds by
  their training means: ``(2 y·o − o·p) / y·y`` for the offsets o) sum to ``r2_joint``.
- ``r2_unique`` (variance partitioning): ``r2_joint`` minus the held-out R² of a model fitted
  separately without that space (``r2_without``); ``r2_shared = r2_joint − Σ r2_unique``, the
  variance explained but not by any one space alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator
from sklearn.model_selection import KFold

from neuroalign.analysis.encoding import (
    ALPHAS,
    RidgeEncoder,
    _as_2d,
    _himalaya_backend,
    _r2,
    _targets,
    encoding_folds,
    pearson_r,
)

__all__ = ["MAX_SPACES", "BandedRidgeEncoder", "banded_encoding"]

#: the most feature spaces a banded model takes (the random search grows with them)
MAX_SPACES = 6


class BandedRidgeEncoder(BaseEstimator):
    """Banded ridge with one penalty per feature space and per target (scikit-learn style).

    Args:
        alphas: the grid of overall penalties of himalaya's random search (default
            :data:`~neuroalign.analysis.encoding.ALPHAS`).
        n_iter: the random search's draws of the spaces' relative weights.
        inner_folds: folds of the inner search (shuffled with ``seed``).
        solver: ``"auto"``, ``"primal"`` or ``"kernel"`` (as :class:`RidgeEncoder`).
        device: None (numpy, float64) or a torch device (float32).
        seed: the seed of the inner folds and of the random search.

    ``fit(xs, y)`` takes a list of (n_stimuli, n_features_i) arrays. Attributes after ``fit``:
    ``band_alphas_`` (n_spaces, n_targets), ``solver_``, ``coefs_`` (a list of
    (n_features_i, n_targets)), ``intercept_`` (n_targets,).
    """

    def __init__(self, alphas=None, n_iter: int = 100, inner_folds: int = 5,
                 solver: str = "auto", device: str | None = None, seed: int = 0):
        self.alphas = alphas
        self.n_iter = n_iter
        self.inner_folds = inner_folds
        self.solver = solver
        self.device = device
        self.seed = seed

    def fit(self, xs: Sequence, y) -> BandedRidgeEncoder:
        xs = [_as_2d(x, f"space {i}") for i, x in enumerate(xs)]
        y = _as_2d(y, "y")
        if not 2 <= len(xs) <= MAX_SPACES:
            raise ValueError(f"a banded model takes 2 to {MAX_SPACES} feature spaces; got {len(xs)}")
        if any(len(x) != len(y) for x in xs):
            raise ValueError(f"every space needs the {len(y)} stimuli of y; got "
                             f"{[len(x) for x in xs]}")
        if self.solver not in ("auto", "primal", "kernel"):
            raise ValueError(f"solver must be 'auto', 'primal' or 'kernel'; got {self.solver!r}")
        n_features = sum(x.shape[1] for x in xs)
        kernel = self.solver == "kernel" or (self.solver == "auto" and 2 * n_features > len(y))
        self.solver_ = "kernel" if kernel else "primal"
        dtype = np.float64 if self.device is None else np.float32
        # the intercept is fitted by centring (himalaya splits predictions only without one)
        self.means_ = [x.mean(axis=0, dtype=np.float64) for x in xs]
        y_mean = y.mean(axis=0, dtype=np.float64)
        xc = [(x - m).astype(dtype, copy=False) for x, m in zip(xs, self.means_, strict=True)]
        yc = (y - y_mean).astype(dtype, copy=False)
        params = {"alphas": np.asarray(ALPHAS if self.alphas is None else self.alphas,
                                       dtype=np.float64),
                  "n_iter": self.n_iter, "progress_bar": False}
        cv = KFold(self.inner_folds, shuffle=True, random_state=self.seed)
        with _himalaya_backend(self.device) as backend:
            if kernel:
                from himalaya.kernel_ridge import MultipleKernelRidgeCV

                model = MultipleKernelRidgeCV(kernels="precomputed", solver_params=params, cv=cv,
                                              random_state=self.seed)
                model.fit(np.stack([x @ x.T for x in xc]), yc)
                dual = np.asarray(backend.to_numpy(model.dual_coef_), dtype=np.float64)
                weights = np.exp(np.asarray(backend.to_numpy(model.deltas_), dtype=np.float64))
                # space i's primal weights: its kernel weight times X_iᵀ dual_coef
                self.coefs_ = [x.T.astype(np.float64) @ dual * w
                               for x, w in zip(xc, weights, strict=True)]
            else:
                from himalaya.ridge import BandedRidgeCV

                params["warn"] = False
                model = BandedRidgeCV(groups="input", solver_params=params, cv=cv,
                                      random_state=self.seed)
                model.fit(xc, yc)
                coef = np.asarray(backend.to_numpy(model.coef_), dtype=np.float64)
                self.coefs_ = np.split(coef, np.cumsum([x.shape[1] for x in xc])[:-1])
            deltas = np.asarray(backend.to_numpy(model.deltas_), dtype=np.float64)
        self.band_alphas_ = np.exp(-deltas)
        self.intercept_ = y_mean
        return self

    def predict(self, xs: Sequence, split: bool = False) -> np.ndarray:
        """(n_stimuli, n_targets) predictions; with ``split``, (n_spaces, n_stimuli,
        n_targets) each space's part, whose sum plus ``intercept_`` is the prediction."""
        parts = np.stack([
            (_as_2d(x, f"space {i}").astype(np.float64, copy=False) - m) @ c
            for i, (x, m, c) in enumerate(zip(xs, self.means_, self.coefs_, strict=True))])
        return parts if split else parts.sum(axis=0) + self.intercept_


def _oof(fit_predict, n: int, fold: np.ndarray, folds: int) -> np.ndarray:
    out = None
    for k in range(folds):
        pred = fit_predict(fold != k, fold == k, k)
        if out is None:
            out = np.empty((*pred.shape[:-2], n, pred.shape[-1]))
        out[..., fold == k, :] = pred
    assert out is not None
    return out


def banded_encoding(
    spaces: Mapping[str, np.ndarray],
    responses,
    *,
    stimulus_id: Sequence[str] | np.ndarray | None = None,
    folds: int = 5,
    alphas=None,
    n_iter: int = 100,
    inner_folds: int = 5,
    solver: str = "auto",
    seed: int = 0,
    device: str | None = None,
) -> xr.Dataset:
    """Per-neuroid unique and shared held-out variance of 2–6 feature spaces (module docstring).

    Args:
        spaces: {name: (presentation, ...) array}, rows in ``stimulus_id`` order.
        responses, stimulus_id, folds, seed: as
            :func:`~neuroalign.analysis.encoding.layerwise_encoding` (the same outer folds).
        alphas, n_iter, inner_folds, solver, device: as :class:`BandedRidgeEncoder` (the
            models without a space that have one space left are :class:`RidgeEncoder` fits).

    Returns:
        Dataset with ``r2_split``, ``r2_unique``, ``r2_without`` (space, neuroid),
        ``band_alpha`` (space, fold, neuroid), ``r_joint``, ``r2_joint``, ``r2_shared``,
        ``r2_split_intercept`` (neuroid), ``solver`` (the joint model's), ``fold`` (presentation), ``stimulus_id``.
    """
    names = list(spaces)
    if not 2 <= len(names) <= MAX_SPACES:
        raise ValueError(f"banded_encoding takes 2 to {MAX_SPACES} feature spaces; got {len(names)}")
    y, _, coords = _targets(responses, stimulus_id)
    n = len(y)
    xs = [_as_2d(spaces[s], f"space {s!r}") for s in names]
    for s, x in zip(names, xs, strict=True):
        if len(x) != n:
            raise ValueError(f"space {s!r} has {len(x)} stimuli; the responses have {n}")
    fold = encoding_folds(n, folds, seed)
    band = np.empty((len(names), folds, y.shape[1]))
    intercepts = np.empty_like(y)
    solvers = []

    def joint(train, test, k):
        model = BandedRidgeEncoder(alphas, n_iter, inner_folds, solver, device, seed + 1).fit(
            [x[train] for x in xs], y[train])
        band[:, k] = model.band_alphas_
        intercepts[test] = model.intercept_
        solvers.append(model.solver_)
        return model.predict([x[test] for x in xs], split=True)

    parts = _oof(joint, n, fold, folds)
    predicted = parts.sum(axis=0) + intercepts
    r2_joint = _r2(y, predicted)
    without = np.empty((len(names), y.shape[1]))
    for i in range(len(names)):
        rest = [x for j, x in enumerate(xs) if j != i]

        def reduced(train, test, k, rest=rest):
            if len(rest) == 1:
                model = RidgeEncoder(alphas, inner_folds, solver, device, seed + 1)
                return model.fit(rest[0][train], y[train]).predict(rest[0][test])
            return BandedRidgeEncoder(alphas, n_iter, inner_folds, solver, device, seed + 1).fit(
                [x[train] for x in rest], y[train]).predict([x[test] for x in rest])

        without[i] = _r2(y, _oof(reduced, n, fold, folds))
    yc, pc = y - y.mean(axis=0), predicted - y.mean(axis=0)
    r2_split = (2 * (yc * parts).sum(axis=1) - (parts * pc).sum(axis=1)) / (yc**2).sum(axis=0)
    unique = r2_joint - without
    ids = (np.asarray(stimulus_id).astype(str) if stimulus_id is not None
           else np.asarray(responses["stimulus_id"].values).astype(str)
           if isinstance(responses, xr.DataArray) else np.arange(n).astype(str))
    sn = ("space", "neuroid")
    return xr.Dataset(
        {
            "r2_split": (sn, r2_split, {"long_name": "space's share of the joint held-out R² "
                                        "(product measure)"}),
            "r2_unique": (sn, unique, {"long_name": "joint R² minus R² without the space"}),
            "r2_without": (sn, without, {"long_name": "held-out R² of the model without the space"}),
            "band_alpha": (("space", "fold", "neuroid"), band,
                           {"long_name": "chosen ridge penalty of each space"}),
            "r2_split_intercept": ("neuroid", r2_joint - r2_split.sum(axis=0),
                                   {"long_name": "the folds' intercepts' share of the joint R²"}),
            "r_joint": ("neuroid", pearson_r(y, predicted), {"long_name": "joint held-out r"}),
            "r2_joint": ("neuroid", r2_joint, {"long_name": "joint held-out R²"}),
            "r2_shared": ("neuroid", r2_joint - unique.sum(axis=0),
                          {"long_name": "joint R² minus the sum of the unique R²"}),
            "fold": ("presentation", fold, {"long_name": "outer fold of each stimulus"}),
        },
        coords={"space": names, "stimulus_id": ("presentation", ids), **coords},
        attrs={"folds": folds, "inner_folds": inner_folds, "n_iter": n_iter, "seed": seed,
               "solver": solvers[-1],
               "alphas": np.asarray(ALPHAS if alphas is None else alphas, dtype=np.float64)},
    )
