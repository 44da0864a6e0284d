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
    with_ceilings,
)
from neuroalign.analysis.encoding_kernels import LinearKernel, kernel_fit_predict, linear_kernel

__all__ = ["MAX_SPACES", "BandedRidgeEncoder", "banded_encoding", "banded_kernel_fit_predict"]

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
                dual, deltas = _fit_kernels(np.stack([x @ x.T for x in xc]), yc, params, cv,
                                            self.seed, backend)
                # space i's primal weights: its kernel weight times X_iᵀ dual_coef
                self.coefs_ = [x.T.astype(np.float64) @ dual * w
                               for x, w in zip(xc, np.exp(deltas), strict=True)]
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


def _fit_kernels(kernels: np.ndarray, yc: np.ndarray, params: dict, cv, seed: int, backend
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(dual coefficients, deltas (n_spaces, n_targets)) of himalaya's
    ``MultipleKernelRidgeCV`` on precomputed (n_spaces, n, n) kernels and centred targets."""
    from himalaya.kernel_ridge import MultipleKernelRidgeCV

    model = MultipleKernelRidgeCV(kernels="precomputed", solver_params=params, cv=cv,
                                  random_state=seed)
    model.fit(kernels, yc)
    return (np.asarray(backend.to_numpy(model.dual_coef_), dtype=np.float64),
            np.asarray(backend.to_numpy(model.deltas_), dtype=np.float64))


def banded_kernel_fit_predict(kernels: Sequence[LinearKernel], y: np.ndarray, train: np.ndarray,
                              test: np.ndarray, alphas=None, n_iter: int = 100,
                              inner_folds: int = 5, device: str | None = None, seed: int = 0
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(each space's part of the predictions of the ``test`` rows (n_spaces, n_test,
    n_targets), band penalties (n_spaces, n_targets), intercepts (n_targets,)) of banded ridge
    in the dual form from the spaces' n × n kernels (each centred on the ``train`` rows), as
    :class:`BandedRidgeEncoder` with ``solver="kernel"`` fits the spaces' features."""
    from neuroalign.analysis.encoding_kernels import _centred

    train, test = np.flatnonzero(train), np.flatnonzero(test)
    if not 2 <= inner_folds <= len(train):
        raise ValueError(f"inner_folds must be between 2 and the {len(train)} training stimuli; "
                         f"got {inner_folds}")
    dtype = np.float64 if device is None else np.float32
    y_mean = y[train].mean(axis=0)
    params = {"alphas": np.asarray(ALPHAS if alphas is None else alphas, dtype=np.float64),
              "n_iter": n_iter, "progress_bar": False}
    cv = KFold(inner_folds, shuffle=True, random_state=seed)
    with _himalaya_backend(device) as backend:
        dual, deltas = _fit_kernels(
            np.stack([_centred(k.gram, train, train) for k in kernels]).astype(dtype),
            (y[train] - y_mean).astype(dtype), params, cv, seed, backend)
    parts = np.stack([(_centred(k.gram, test, train) @ dual) * np.exp(d)
                      for k, d in zip(kernels, deltas, strict=True)])
    return parts, np.exp(-deltas), y_mean


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
    spaces: Mapping[str, np.ndarray | LinearKernel],
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
    n_splits: int = 100,
) -> xr.Dataset:
    """Per-neuroid unique and shared held-out variance of 2–6 feature spaces (module docstring).

    Args:
        spaces: {name: (presentation, ...) array or
            :class:`~neuroalign.analysis.encoding_kernels.LinearKernel`}, rows in
            ``stimulus_id`` order. With a kernel among them, or when the dual form is chosen
            (``solver``), every space is fitted from its n × n kernel, computed once.
        responses, stimulus_id, folds, seed, n_splits: as
            :func:`~neuroalign.analysis.encoding.layerwise_encoding` (the same outer folds).
        alphas, n_iter, inner_folds, solver, device: as :class:`BandedRidgeEncoder` (the
            models without a space that have one space left are :class:`RidgeEncoder` fits).

    Returns:
        Dataset with ``r2_split``, ``r2_unique``, ``r2_without`` (space, neuroid),
        ``band_alpha`` (space, fold, neuroid), ``r_joint``, ``r2_joint``, ``r2_shared``,
        ``r2_split_intercept`` (neuroid), ``solver`` (the joint model's), ``fold``
        (presentation), ``stimulus_id``; with repetitions also the ceilings and each score
        noise-corrected (``<name>_corrected``: R² values over the NCSNR ceiling, ``r_joint``
        over √ split-half reliability), as ``layerwise_encoding``.
    """
    names = list(spaces)
    if not 2 <= len(names) <= MAX_SPACES:
        raise ValueError(f"banded_encoding takes 2 to {MAX_SPACES} feature spaces; got {len(names)}")
    if solver not in ("auto", "primal", "kernel"):
        raise ValueError(f"solver must be 'auto', 'primal' or 'kernel'; got {solver!r}")
    y, trials, coords = _targets(responses, stimulus_id)
    n = len(y)
    for s in names:
        if len(spaces[s]) != n:
            raise ValueError(f"space {s!r} has {len(spaces[s])} stimuli; the responses have {n}")
    fold = encoding_folds(n, folds, seed)
    xs: list = [v if isinstance(v, LinearKernel) else np.asarray(v).reshape(n, -1)
                for v in spaces.values()]
    n_features = sum(x.n_features if isinstance(x, LinearKernel) else x.shape[1] for x in xs)
    kernel = (solver == "kernel" or any(isinstance(x, LinearKernel) for x in xs)
              or (solver == "auto" and 2 * n_features > int((fold != 0).sum())))
    xs = [x if isinstance(x, LinearKernel) else
          linear_kernel(x, name=f"space {s!r}") if kernel else _as_2d(x, f"space {s!r}")
          for s, x in zip(names, xs, strict=True)]
    band = np.empty((len(names), folds, y.shape[1]))
    intercepts = np.empty_like(y)
    kw = {"alphas": alphas, "n_iter": n_iter, "inner_folds": inner_folds, "device": device,
          "seed": seed + 1}

    def joint(train, test, k):
        if kernel:
            parts, band[:, k], intercepts[test] = banded_kernel_fit_predict(xs, y, train, test,
                                                                           **kw)
            return parts
        model = BandedRidgeEncoder(solver="primal", **kw).fit([x[train] for x in xs], y[train])
        band[:, k] = model.band_alphas_
        intercepts[test] = model.intercept_
        return model.predict([x[test] for x in xs], split=True)

    parts = _oof(joint, n, fold, folds)
    predicted = parts.sum(axis=0) + intercepts
    r2_joint = _r2(y, predicted)
    without = np.empty((len(names), y.shape[1]))
    for i in range(len(names)):
        rest = [x for j, x in enumerate(xs) if j != i]

        def reduced(train, test, k, rest=rest):
            if len(rest) == 1 and kernel:
                return kernel_fit_predict(rest[0], y, train, test, alphas, inner_folds, device,
                                          seed + 1)[0]
            if len(rest) == 1:
                model = RidgeEncoder(alphas, inner_folds, "primal", device, seed + 1)
                return model.fit(rest[0][train], y[train]).predict(rest[0][test])
            if kernel:
                split, _, offset = banded_kernel_fit_predict(rest, y, train, test, **kw)
                return split.sum(axis=0) + offset
            return BandedRidgeEncoder(solver="primal", **kw).fit(
                [x[train] for x in rest], y[train]).predict([x[test] for x in rest])

        without[i] = _r2(y, _oof(reduced, n, fold, folds))
    yc, pc = y - y.mean(axis=0), predicted - y.mean(axis=0)
    r2_split = (2 * (yc * parts).sum(axis=1) - (parts * pc).sum(axis=1)) / (yc**2).sum(axis=0)
    unique = r2_joint - without
    ids = (np.asarray(stimulus_id).astype(str) if stimulus_id is not None
           else np.asarray(responses["stimulus_id"].values).astype(str)
           if isinstance(responses, xr.DataArray) else np.arange(n).astype(str))
    sn = ("space", "neuroid")
    out = xr.Dataset(
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
               "solver": "kernel" if kernel else "primal",
               "alphas": np.asarray(ALPHAS if alphas is None else alphas, dtype=np.float64)},
    )
    return with_ceilings(out, trials, n_splits, seed, r=["r_joint"],
                         r2=["r2_joint", "r2_unique", "r2_shared", "r2_split"])
