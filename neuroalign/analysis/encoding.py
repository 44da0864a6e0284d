"""Encoding models: cross-validated ridge from layer features to each neuroid's responses.

One regularisation value per neuroid (target) is chosen from a wide log grid by an inner
K-fold on the training stimuli; the fitted map is scored on held-out stimuli of an outer
K-fold. The solvers are himalaya's: ``RidgeCV`` (primal) when a layer has at most half as
many features as training stimuli, ``KernelRidgeCV`` with a linear kernel (dual) otherwise
(same predictions, see the tests; himalaya's primal solver was 3× slower than the dual at
960 stimuli × 735 features and faster at 960 × 300); with a ``device`` they run on himalaya's torch backend.

Rules:

- Folds are over *stimuli*: the model is fit to the repeat-averaged responses of the
  training stimuli (:func:`neuroalign.data.assemblies.average_repetitions`), so the repeats
  of a stimulus never straddle folds.
- Scores per neuroid come from the pooled out-of-fold predictions (every stimulus predicted
  once, by the model that did not see it): Pearson ``r`` and ``r2``
  (``1 - SS_res / SS_tot``, which can be negative).
- With repetitions, the noise-corrected scores are ``r / sqrt(split_half_reliability)`` and
  ``r2 / (ncsnr_ceiling / 100)`` (see :mod:`neuroalign.analysis.reliability`); without, the
  result has no ceilings and says so in its ``noise_ceiling`` attribute.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator
from sklearn.model_selection import KFold

if TYPE_CHECKING:
    from neuroalign.analysis.encoding_kernels import LinearKernel

__all__ = ["ALPHAS", "SOLVERS", "RidgeEncoder", "encoding_folds", "layerwise_encoding", "pearson_r",
           "with_ceilings"]

#: The default grid of ridge penalties: 10⁻² … 10¹⁰, 25 values log-spaced.
ALPHAS = np.logspace(-2, 10, 25)
#: ``"auto"`` (kernel when features exceed half the training stimuli), ``"primal"``, ``"kernel"``.
SOLVERS = ("auto", "primal", "kernel")


@contextlib.contextmanager
def _himalaya_backend(device: str | None) -> Iterator:
    """himalaya's numpy backend (device None) or its torch backend on ``device``, restored
    afterwards (himalaya keeps the backend in a global)."""
    from himalaya.backend import get_backend, set_backend

    previous = get_backend()
    if device is None:
        name = "numpy"
    elif str(device).startswith("cuda"):
        name = "torch_cuda"
    elif str(device) == "cpu":
        name = "torch"
    else:
        raise ValueError(f"device must be None, 'cpu' or 'cuda[:i]'; got {device!r}")
    backend = set_backend(name)
    try:
        if name == "torch_cuda":
            import torch

            with torch.cuda.device(torch.device(str(device))):
                yield backend
        else:
            yield backend
    finally:
        set_backend(previous)


def pearson_r(y: np.ndarray, y_hat: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``y`` with the same column of ``y_hat``."""
    y = y - y.mean(axis=0)
    y_hat = y_hat - y_hat.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (y * y_hat).sum(axis=0) / np.sqrt((y**2).sum(axis=0) * (y_hat**2).sum(axis=0))


def _r2(y: np.ndarray, y_hat: np.ndarray) -> np.ndarray:
    return 1 - ((y - y_hat) ** 2).sum(axis=0) / ((y - y.mean(axis=0)) ** 2).sum(axis=0)


class RidgeEncoder(BaseEstimator):
    """Ridge regression with one penalty per target chosen by inner K-fold (scikit-learn style).

    Args:
        alphas: the penalty grid (default :data:`ALPHAS`).
        inner_folds: folds of the inner selection of alpha (shuffled with ``seed``).
        solver: one of :data:`SOLVERS`.
        device: None (numpy, float64) or a torch device (``"cpu"``, ``"cuda"``; float32).
        seed: the seed of the inner folds.

    Attributes (after ``fit``): ``best_alphas_`` (n_targets,), ``solver_`` (``"primal"`` or
    ``"kernel"``), ``mean_`` (n_features,), ``coef_`` (n_features, n_targets),
    ``intercept_`` (n_targets,); in the kernel form also ``dual_coef_`` (n_train, n_targets)
    and ``X_fit_`` (the training features, not copied), from which ``predict`` works.
    """

    def __init__(self, alphas=None, inner_folds: int = 5, solver: str = "auto",
                 device: str | None = None, seed: int = 0):
        self.alphas = alphas
        self.inner_folds = inner_folds
        self.solver = solver
        self.device = device
        self.seed = seed

    def fit(self, x, y) -> RidgeEncoder:
        """Fit on features ``x`` (n_stimuli, n_features) and targets ``y`` (n_stimuli, n_targets)."""
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}; got {self.solver!r}")
        x = np.asarray(x)
        x = x.reshape(len(x), -1) if x.ndim != 2 else x
        y = _as_2d(y, "y")
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} stimuli but y has {len(y)}")
        if self.inner_folds > len(x) or self.inner_folds < 2:
            raise ValueError(
                f"inner_folds must be between 2 and the {len(x)} training stimuli; got "
                f"{self.inner_folds}")
        kernel = self.solver == "kernel" or (self.solver == "auto" and 2 * x.shape[1] > len(x))
        self.solver_ = "kernel" if kernel else "primal"
        alphas = np.asarray(ALPHAS if self.alphas is None else self.alphas, dtype=np.float64)
        # ridge with an intercept does not change when features are centred; centring keeps
        # the float32 kernel well conditioned
        self.mean_ = x.mean(axis=0, dtype=np.float64)
        if kernel:
            # the n × n kernel from feature chunks (checked for NaN through its diagonal), fitted
            # in the dual form; predictions are kernel rows times the dual coefficients, so the
            # (n_features, n_targets) primal weights are formed only if coef_ is asked for
            from neuroalign.analysis.encoding_kernels import _centred, fit_dual, linear_kernel

            gram = linear_kernel(x).gram
            every = np.arange(len(x))
            self.dual_coef_, self._intercept, self.best_alphas_ = fit_dual(
                _centred(gram, every, every), y, alphas, self.inner_folds, self.device,
                self.seed)
            self.X_fit_ = x
            return self
        x = _as_2d(x, "x") - self.mean_
        dtype = np.float64 if self.device is None else np.float32
        cv = KFold(self.inner_folds, shuffle=True, random_state=self.seed)
        with _himalaya_backend(self.device) as backend:
            from himalaya.ridge import RidgeCV

            model = RidgeCV(alphas=alphas, fit_intercept=True, cv=cv,
                            solver_params={"warn": False})
            model.fit(x.astype(dtype, copy=False), y.astype(dtype, copy=False))
            best = np.asarray(backend.to_numpy(model.best_alphas_), dtype=np.float64)
            # himalaya hands back the grid values up to rounding: report the grid's own
            nearest = np.abs(np.log(best)[:, None] - np.log(alphas)[None, :]).argmin(axis=1)
            self.best_alphas_ = alphas[nearest]
            intercept = np.asarray(backend.to_numpy(model.intercept_), dtype=np.float64)
            self._coef = np.asarray(backend.to_numpy(model.coef_), dtype=np.float64)
        self._intercept = np.broadcast_to(intercept, (y.shape[1],))
        return self

    def _centred_chunks(self, chunk_size: int = 4096):
        """(feature slice, the training features' chunk centred on their mean, float64)."""
        for start in range(0, len(self.mean_), chunk_size):
            s = slice(start, start + chunk_size)
            yield s, self.X_fit_[:, s] - self.mean_[s]

    @property
    def coef_(self) -> np.ndarray:
        """(n_features, n_targets) primal weights, float64 (in the kernel form computed from the
        training features and dual coefficients on each access)."""
        if self.solver_ == "primal":
            return self._coef
        coef = np.empty((len(self.mean_), self.dual_coef_.shape[1]))
        for s, train in self._centred_chunks():
            coef[s] = train.T @ self.dual_coef_
        return coef

    @property
    def intercept_(self) -> np.ndarray:
        """(n_targets,) the intercept on the uncentred features."""
        return self._intercept - self.mean_ @ self.coef_

    def predict(self, x) -> np.ndarray:
        """Predicted targets (n_stimuli, n_targets), float64."""
        x = _as_2d(x, "x")
        if x.shape[1] != len(self.mean_):
            raise ValueError(f"x has {x.shape[1]} features; the model was fitted on "
                             f"{len(self.mean_)}")
        if self.solver_ == "primal":
            return (x - self.mean_) @ self._coef + self._intercept
        cross = np.zeros((len(x), len(self.X_fit_)))
        for s, train in self._centred_chunks():  # the kernel rows of x against the training set
            cross += (x[:, s] - self.mean_[s]) @ train.T
        return cross @ self.dual_coef_ + self._intercept

    def score(self, x, y) -> float:
        """The mean over targets of R² on (x, y) (scikit-learn's regressor convention)."""
        return float(np.mean(_r2(_as_2d(y, "y"), self.predict(x))))


def _as_2d(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 1 and name == "y":
        a = a[:, None]
    if a.ndim != 2:
        a = a.reshape(len(a), -1)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds {int((~np.isfinite(a)).sum())} NaN or infinite values")
    return a


def encoding_folds(n_stimuli: int, folds: int = 5, seed: int = 0) -> np.ndarray:
    """(n_stimuli,) the outer fold of each stimulus (shuffled K-fold from ``seed``)."""
    if not 2 <= folds <= n_stimuli:
        raise ValueError(f"folds must be between 2 and the {n_stimuli} stimuli; got {folds}")
    fold = np.empty(n_stimuli, dtype=np.int64)
    for k, (_, test) in enumerate(KFold(folds, shuffle=True, random_state=seed).split(
            np.zeros(n_stimuli))):
        fold[test] = k
    return fold


def _targets(responses, stimulus_id) -> tuple[np.ndarray, xr.DataArray | None, dict]:
    """Repeat-averaged targets in the activations' stimulus order, the trials (or None) and
    the neuroid coords."""
    from neuroalign.data.assemblies import average_repetitions, check_assembly

    if not isinstance(responses, xr.DataArray):
        y = _as_2d(responses, "responses")
        return y, None, {}
    responses = check_assembly(responses)
    if stimulus_id is not None:
        ids = np.asarray(stimulus_id).astype(str).tolist()
        theirs = np.asarray(responses["stimulus_id"].values).astype(str)
        position = {s: i for i, s in enumerate(theirs)}
        missing = [s for s in ids if s not in position]
        if missing:
            raise ValueError(
                f"{len(missing)} of the activations' {len(ids)} stimulus ids are not in the "
                f"responses, e.g. {missing[:3]}; the responses have e.g. {theirs[:3].tolist()}")
        responses = responses.isel(presentation=[position[s] for s in ids])
    coords = {k: c for k, c in responses.coords.items() if c.dims == ("neuroid",)}
    y = average_repetitions(responses).values
    spread = y.max(axis=0) - y.min(axis=0)
    if (spread == 0).any():
        raise ValueError(
            f"{int((spread == 0).sum())} neuroid(s) have constant responses over stimuli (e.g. "
            f"neuroid {int(np.flatnonzero(spread == 0)[0])}); drop them before fitting")
    trials = responses if "repetition" in responses.dims else None
    return y, trials, coords


def layerwise_encoding(
    activations: Mapping[str, np.ndarray] | Mapping[str, np.ndarray | LinearKernel],
    responses,
    *,
    stimulus_id: Sequence[str] | np.ndarray | None = None,
    folds: int = 5,
    alphas=None,
    inner_folds: int = 5,
    solver: str = "auto",
    seed: int = 0,
    device: str | None = None,
    n_splits: int = 100,
) -> xr.Dataset:
    """Cross-validated encoding scores of every layer for every neuroid.

    Args:
        activations: {layer: (presentation, ...) array}, rows in ``stimulus_id`` order; a
            layer may also be a :class:`~neuroalign.analysis.encoding_kernels.LinearKernel`
            (its n × n kernel, fitted in the dual form whatever ``solver`` says), or a dask
            array (or an xarray object backed by one, e.g. ``flatten`` of a file opened with
            dask chunks): its kernel is computed blockwise on the active dask scheduler and
            fitted in the dual form.
        responses: an assembly (presentation, neuroid[, repetition]) or a (presentation,
            neuroid) array in the activations' row order.
        stimulus_id: the activations' stimulus ids; the responses are matched to them by id
            (default: the same order as the responses).
        folds: outer folds over stimuli.
        alphas, inner_folds, solver, device: as :class:`RidgeEncoder`.
        seed: the seed of the outer folds (inner folds: ``seed + 1``; ceiling splits: ``seed``).
        n_splits: random splits of the split-half ceiling.

    Returns:
        Dataset with ``r``, ``r2`` (layer, neuroid), ``alpha`` (layer, fold, neuroid),
        ``solver`` (layer), ``fold`` (presentation) and ``stimulus_id``; with repetitions also
        ``r_corrected``, ``r2_corrected`` (layer, neuroid) and the ceilings of
        :func:`neuroalign.analysis.reliability.noise_ceilings` (neuroid).
    """
    if not activations:
        raise ValueError("activations is empty: no layer to fit")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}; got {solver!r}")
    y, trials, coords = _targets(responses, stimulus_id)
    n = len(y)
    fold = encoding_folds(n, folds, seed)
    layers = list(activations)
    shape = (len(layers), y.shape[1])
    r, r2 = np.empty(shape), np.empty(shape)
    chosen = np.empty((len(layers), folds, y.shape[1]))
    solvers = []
    from neuroalign.analysis.dask_gram import as_dask
    from neuroalign.analysis.encoding_kernels import LinearKernel, kernel_fit_predict, linear_kernel

    n_train = int((fold != 0).sum())
    for li, layer in enumerate(layers):
        value = activations[layer]
        if len(value) != n:
            raise ValueError(f"layer {layer!r} has {len(value)} stimuli; the responses have {n}")
        x = value
        if as_dask(value) is not None:  # the kernel as a dask graph: never the whole layer here
            x = linear_kernel(value, name=f"layer {layer!r}")
        elif not isinstance(value, LinearKernel):
            x = np.asarray(value)
            x = x.reshape(n, -1) if x.ndim != 2 else x
            if solver == "kernel" or (solver == "auto" and 2 * x.shape[1] > n_train):
                # one n × n kernel for every fold (each fold centres its own slices)
                x = linear_kernel(x, name=f"layer {layer!r}")
            else:
                x = _as_2d(x, f"layer {layer!r}")
        predicted = np.empty_like(y)
        for k in range(folds):
            train, test = fold != k, fold == k
            if isinstance(x, LinearKernel):
                predicted[test], chosen[li, k] = kernel_fit_predict(
                    x, y, train, test, alphas, inner_folds, device, seed + 1)
                continue
            model = RidgeEncoder(alphas, inner_folds, "primal", device, seed + 1).fit(
                x[train], y[train])
            predicted[test] = model.predict(x[test])
            chosen[li, k] = model.best_alphas_
        solvers.append("kernel" if isinstance(x, LinearKernel) else model.solver_)
        r[li], r2[li] = pearson_r(y, predicted), _r2(y, predicted)
    dims = ("layer", "neuroid")
    if stimulus_id is not None:
        ids = np.asarray(stimulus_id).astype(str)
    elif trials is not None or isinstance(responses, xr.DataArray):
        ids = np.asarray(responses["stimulus_id"].values).astype(str)
    else:
        ids = np.arange(n).astype(str)
    out = xr.Dataset(
        {
            "r": (dims, r, {"long_name": "held-out Pearson r"}),
            "r2": (dims, r2, {"long_name": "held-out R²"}),
            "alpha": (("layer", "fold", "neuroid"), chosen, {"long_name": "chosen ridge penalty"}),
            "solver": ("layer", np.array(solvers)),
            "fold": ("presentation", fold, {"long_name": "outer fold of each stimulus"}),
        },
        coords={"layer": layers, "stimulus_id": ("presentation", ids), **coords},
        attrs={"folds": folds, "inner_folds": inner_folds, "seed": seed,
               "alphas": np.asarray(ALPHAS if alphas is None else alphas, dtype=np.float64)},
    )
    return with_ceilings(out, trials, n_splits, seed, r=["r"], r2=["r2"])


def with_ceilings(out: xr.Dataset, trials, n_splits: int, seed: int, r: Sequence[str],
                  r2: Sequence[str]) -> xr.Dataset:
    """``out`` with the noise ceilings of the ``trials`` (neuroid) and each variable of ``r``
    divided by √(split-half reliability), each of ``r2`` by the NCSNR ceiling (as a fraction),
    as ``<name>_corrected``; without trials (None) it says so in ``noise_ceiling``."""
    from neuroalign.analysis.reliability import noise_ceilings

    if trials is None:
        out.attrs["noise_ceiling"] = "none: the responses have no repetitions"
        return out
    ceilings = noise_ceilings(trials, n_splits=n_splits, seed=seed)
    out = out.merge(ceilings.drop_vars(list(ceilings.coords)))
    for name in r:
        out[f"{name}_corrected"] = out[name] / np.sqrt(out["split_half_reliability"])
        out[f"{name}_corrected"].attrs["long_name"] = f"{name} / sqrt(split-half reliability)"
    for name in r2:
        out[f"{name}_corrected"] = out[name] / (out["ncsnr_ceiling"] / 100)
        out[f"{name}_corrected"].attrs["long_name"] = f"{name} / (NCSNR ceiling / 100)"
    out.attrs["noise_ceiling"] = "split-half (Spearman-Brown) and NCSNR, from the repetitions"
    return out
