"""Linear probes on frozen activations: the FocusMIM readout in torch, an L2-regularised
logistic regression fitted by full-batch L-BFGS in torch, and a scikit-learn one.

FocusMIM's readout (``LinearProbe(protocol="focusmim")``): flattened, unstandardised latent ->
Linear(D -> n_classes), Adam (lr 1e-4, weight decay 1e-8), batch 512, up to 1000 epochs,
early stopping on the loss of a held-out validation set (patience 10), accuracy on the test
set. ``LinearProbe(protocol="logistic-lbfgs")`` minimises scikit-learn's
``LogisticRegression`` objective on standardised features, on the probe's device. All probes
follow the scikit-learn estimator contract (parameters stored in __init__,
work in `fit`, learned state ending in `_`), with `seed` for every random choice.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neuroalign.analysis._arrays import as_matrix, check_finite

__all__ = ["PROBE_KINDS", "PROTOCOLS", "LinearProbe", "SklearnProbe", "layerwise_probe"]

PROBE_KINDS = ("torch", "sklearn")

#: The settings of each `LinearProbe` protocol (see its docstring).
PROTOCOLS: dict[str, dict[str, Any]] = {
    "focusmim": {
        "standardize": False, "monitor": "val_loss", "stratify": False, "lr": 1e-4,
        "batch_size": 512, "max_epochs": 1000, "patience": 10, "weight_decay": 1e-8,
    },
    "standardized-accuracy": {
        "standardize": True, "monitor": "val_accuracy", "stratify": True, "lr": 1e-4,
        "batch_size": 512, "max_epochs": 200, "patience": 10, "weight_decay": 0.0,
    },
    "logistic-lbfgs": {"standardize": True, "C": 1.0, "max_iter": 100, "tol": 1e-4},
}
#: LinearProbe's parameters that set a protocol's values; each applies where PROTOCOLS has it.
_SETTINGS = ("lr", "batch_size", "max_epochs", "patience", "weight_decay", "C", "max_iter", "tol")


def _labels(y, n: int, name: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) (one label per stimulus); got {y.shape}")
    return y


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Linear softmax readout: Adam with early stopping, or L2-regularised logistic regression.

    Three protocols (``PROTOCOLS``):

    - ``"focusmim"`` (default): the FocusMIM reference's readout. The flattened features go
      into the linear layer as they are (not standardised); Adam lr 1e-4, weight decay 1e-8,
      batch 512, up to 1000 epochs; the validation loss (cross-entropy, the mean of the
      per-batch means over validation batches of ``batch_size`` in order, as the reference
      computes it) is measured after every epoch. A lower loss is kept as the best weights;
      an improvement smaller than 1e-4, or none, counts towards ``patience`` (10) and any
      larger improvement resets the count; training stops when the count reaches
      ``patience``. Without an explicit validation set, a random 20% of (X, y) (the
      reference's 1,000 of STL-10's 5,000 training images) is held out.
    - ``"standardized-accuracy"``: features standardised with the training mean and std;
      Adam lr 1e-4, weight decay 0, batch 512, up to 200 epochs; stops when the validation
      accuracy has not risen for ``patience`` (10) epochs; a stratified 20% validation split.
      With either Adam protocol the weights of the best epoch are restored at the end.
    - ``"logistic-lbfgs"``: features standardised as above; minimises scikit-learn's
      ``LogisticRegression`` objective, mean cross-entropy + ‖W‖²/(2·C·n) (intercept not
      penalised; C 1.0), with full-batch L-BFGS (torch.optim.LBFGS, strong Wolfe line
      search, 10 corrections, from zero weights) on the device, until max |gradient| <=
      ``tol`` (1e-4) or ``max_iter`` (100) iterations, as scikit-learn's lbfgs solver. All of
      (X, y) is used; no validation split, no seed-dependent choice: the same weights for any
      row order (up to float32 rounding). The fastest of the three at scikit-learn's
      accuracy (benchmarks/bench_probe.py).

    The other parameters default (None) to the protocol's values; giving one the protocol
    does not have (``lr`` with "logistic-lbfgs", ``C`` with "focusmim") is an error.

    Args:
        protocol: "focusmim", "standardized-accuracy" or "logistic-lbfgs".
        lr: Adam learning rate.
        batch_size: minibatch size.
        max_epochs: upper bound on training epochs.
        patience: see the protocols above.
        weight_decay: Adam weight decay (added to the gradient, as torch's Adam does).
        C: inverse regularisation strength ("logistic-lbfgs"), as scikit-learn's.
        max_iter: upper bound on L-BFGS iterations ("logistic-lbfgs").
        tol: stop when max |gradient| <= tol ("logistic-lbfgs").
        device: torch device (default: cuda if available, else cpu).
        seed: seed of the validation split, the weight init and the batch order (Adam).

    Attributes:
        classes_: (n_classes,) the labels, sorted.
        mean_, scale_: (D,) standardisation of the features (zeros and ones for "focusmim").
        coef_: (n_classes, D), intercept_: (n_classes,) weights on the (standardised)
            features.
        val_accuracy_: validation accuracy of the kept weights (NaN for "logistic-lbfgs"
            without X_val).
        Adam protocols: best_epoch_: epoch (1-based) whose weights were kept; n_epochs_:
            epochs run; history_: per-epoch validation loss ("focusmim") or accuracy
            ("standardized-accuracy").
        "logistic-lbfgs": n_iter_: L-BFGS iterations; objective_: the objective reached.
    """

    def __init__(
        self,
        protocol: str = "focusmim",
        lr: float | None = None,
        batch_size: int | None = None,
        max_epochs: int | None = None,
        patience: int | None = None,
        weight_decay: float | None = None,
        C: float | None = None,
        max_iter: int | None = None,
        tol: float | None = None,
        device=None,
        seed: int = 0,
    ):
        self.protocol = protocol
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.weight_decay = weight_decay
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.seed = seed

    def _settings(self) -> dict:
        """The protocol's settings with the parameters given explicitly, checked."""
        if self.protocol not in PROTOCOLS:
            raise ValueError(
                f"The 'protocol' parameter of LinearProbe must be one of {list(PROTOCOLS)}; "
                f"got {self.protocol!r}"
            )
        settings: dict[str, Any] = dict(PROTOCOLS[self.protocol])
        for name in _SETTINGS:
            if getattr(self, name) is None:
                continue
            if name not in settings:
                raise ValueError(
                    f"The {name!r} parameter of LinearProbe does not apply to protocol "
                    f"{self.protocol!r} (its settings: {sorted(settings)})"
                )
            settings[name] = getattr(self, name)
        for name in ("batch_size", "max_epochs", "patience", "max_iter"):
            value = settings.get(name, 1)
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(
                    f"The {name!r} parameter of LinearProbe must be a positive integer; got {value!r}"
                )
        for name in ("lr", "C", "tol"):
            if name in settings and not settings[name] > 0:
                raise ValueError(
                    f"The {name!r} parameter of LinearProbe must be > 0; got {settings[name]!r}"
                )
        return settings

    def fit(self, X, y, X_val=None, y_val=None):
        """Trains the probe.

        Args:
            X: (n, D, ...) training features (trailing dims flattened).
            y: (n,) labels.
            X_val, y_val: validation set for early stopping; if omitted, 20% of (X, y) chosen
                with ``seed`` (stratified for "standardized-accuracy", plain random for
                "focusmim", as the reference's ``random_split``). "logistic-lbfgs" fits all of
                (X, y) and only scores X_val if given.

        Returns:
            self.
        """
        import torch

        from neuroalign.analysis._probe_fitting import train_adam

        settings = self._settings()
        adam = "monitor" in settings
        X, y, X_val, y_val = self._split(X, y, X_val, y_val, settings.get("stratify"), adam)
        if settings["standardize"]:
            self.mean_ = X.mean(axis=0, dtype=np.float64).astype(np.float32)
            scale = X.std(axis=0, dtype=np.float64)
            self.scale_ = np.where(scale > 0, scale, 1.0).astype(np.float32)
        else:
            self.mean_ = np.zeros(X.shape[1], np.float32)
            self.scale_ = np.ones(X.shape[1], np.float32)
        device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        train = (self._to_tensor(X, device),
                 torch.as_tensor(np.searchsorted(self.classes_, y), device=device))
        self.n_features_in_ = X.shape[1]
        if not adam:
            return self._fit_lbfgs(train, X_val, y_val, settings)
        val = (self._to_tensor(X_val, device),
               torch.as_tensor(np.searchsorted(self.classes_, y_val), device=device))
        layer, history, best_epoch = train_adam(train, val, len(self.classes_), settings,
                                                self.seed, device)
        with torch.no_grad():
            val_accuracy = float((layer(val[0]).argmax(dim=1) == val[1]).float().mean())
        self.coef_ = layer.weight.detach().cpu().numpy()
        self.intercept_ = layer.bias.detach().cpu().numpy()
        self.best_epoch_, self.n_epochs_ = best_epoch, len(history)
        self.val_accuracy_, self.history_ = val_accuracy, history
        return self

    def _fit_lbfgs(self, train, X_val, y_val, settings: dict):
        from neuroalign.analysis._probe_fitting import fit_lbfgs

        x, y = train
        weight, bias, self.n_iter_, self.objective_ = fit_lbfgs(
            x, y, len(self.classes_), settings["C"], settings["max_iter"], settings["tol"])
        if self.n_iter_ >= settings["max_iter"]:
            warnings.warn(
                f"LinearProbe(protocol='logistic-lbfgs') stopped after max_iter="
                f"{settings['max_iter']} iterations before max |gradient| <= tol; raise max_iter",
                ConvergenceWarning, stacklevel=3)
        self.coef_, self.intercept_ = weight.cpu().numpy(), bias.cpu().numpy()
        self.val_accuracy_ = float("nan") if X_val is None else self.score(X_val, y_val)
        return self

    def _split(self, X, y, X_val, y_val, stratify: bool | None, split: bool = True):
        """Checked float32 matrices and labels; the validation split when none is given."""
        X = as_matrix(X, name="X", dtype=np.float32)
        y = _labels(y, X.shape[0])
        check_finite(X, name="X")
        if (X_val is None) != (y_val is None):
            raise ValueError("give both X_val and y_val, or neither")
        if X_val is None and split:
            X, X_val, y, y_val = train_test_split(
                X, y, test_size=0.2, stratify=y if stratify else None, random_state=self.seed
            )
        elif X_val is not None:
            X_val = as_matrix(X_val, name="X_val", dtype=np.float32)
            y_val = _labels(y_val, X_val.shape[0], "y_val")
            check_finite(X_val, name="X_val")
            if X_val.shape[1] != X.shape[1]:
                raise ValueError(f"X_val has {X_val.shape[1]} features; X has {X.shape[1]}")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"y must hold at least 2 classes; got {self.classes_.tolist()}")
        unknown = np.setdiff1d(np.unique(y_val if y_val is not None else y), self.classes_)
        if unknown.size:
            raise ValueError(f"y_val holds labels absent from y: {unknown.tolist()[:20]}")
        return X, y, X_val, y_val

    def _to_tensor(self, X: np.ndarray, device):
        import torch

        return torch.from_numpy((X - self.mean_) / self.scale_).to(device)

    def decision_function(self, X) -> np.ndarray:
        """Class scores (logits). X: (n, D, ...). Returns (n, n_classes)."""
        self._check_fitted()
        X = as_matrix(X, name="X", dtype=np.float32)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features; the probe was fitted on {self.n_features_in_}"
            )
        Xs = (X - self.mean_) / self.scale_
        return Xs.astype(np.float64) @ self.coef_.T.astype(np.float64) + self.intercept_

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise ValueError("this LinearProbe is not fitted yet; call fit(X, y) first")

    def predict(self, X) -> np.ndarray:
        """Predicted labels. X: (n, D, ...). Returns (n,)."""
        self._check_fitted()
        return self.classes_[self.decision_function(X).argmax(axis=1)]


class SklearnProbe(ClassifierMixin, BaseEstimator):
    """StandardScaler + LogisticRegressionCV (C chosen by cross-validation), for small sets.

    Args:
        Cs: number of C values on a log grid, or the list of C values.
        cv: number of stratified folds.
        max_iter: lbfgs iterations.
        scoring: how C is chosen across folds (a scikit-learn scorer name; log-loss is
            smoother than accuracy on small sets).
        seed: passed to LogisticRegressionCV as its random_state.

    Attributes:
        pipeline_: the fitted sklearn Pipeline; classes_: the labels; C_: chosen C.
    """

    def __init__(
        self,
        Cs=10,
        cv: int = 3,
        max_iter: int = 1000,
        scoring: str = "neg_log_loss",
        seed: int = 0,
    ):
        self.Cs = Cs
        self.cv = cv
        self.scoring = scoring
        self.max_iter = max_iter
        self.seed = seed

    def fit(self, X, y):
        """Fits scaler and cross-validated logistic regression. X: (n, D, ...), y: (n,)."""
        X = as_matrix(X, name="X", dtype=np.float64)
        y = _labels(y, X.shape[0])
        check_finite(X, name="X")
        self.pipeline_ = make_pipeline(
            StandardScaler(),
            LogisticRegressionCV(
                Cs=self.Cs,
                cv=self.cv,
                l1_ratios=(0.0,),  # plain L2 (explicit: sklearn 1.10 changes the default)
                scoring=self.scoring,
                use_legacy_attributes=False,
                max_iter=self.max_iter,
                random_state=self.seed,
            ),
        )
        self.pipeline_.fit(X, y)
        self.classes_ = self.pipeline_.classes_
        self.C_ = float(np.ravel(self.pipeline_[-1].C_)[0])
        return self

    def predict(self, X) -> np.ndarray:
        """Predicted labels. X: (n, D, ...). Returns (n,)."""
        if not hasattr(self, "pipeline_"):
            raise ValueError("this SklearnProbe is not fitted yet; call fit(X, y) first")
        return self.pipeline_.predict(as_matrix(X, name="X", dtype=np.float64))


def layerwise_probe(
    train: Mapping[str, tuple] | Iterable[tuple[str, tuple]],
    test: Mapping[str, tuple],
    kind: str = "torch",
    seeds: Sequence[int] = (0,),
    **probe_params,
) -> xr.Dataset:
    """Test accuracy of a linear probe per layer and seed.

    Args:
        train: {layer: (X (n_train, D, ...), y (n_train,))} or iterable of (layer, (X, y)).
        test: {layer: (X (n_test, D, ...), y (n_test,))} with the same layers.
        kind: 'torch' (LinearProbe, validation split from train) or 'sklearn' (SklearnProbe).
        seeds: the probe's seed in each run.
        **probe_params: parameters of the probe class (e.g. protocol="focusmim", lr=1e-3,
            Cs=[0.1, 1]).

    Returns:
        xr.Dataset: `accuracy` (layer, seed), `accuracy_mean` and `accuracy_std` (layer; std
        with ddof=1, 0 for a single seed); attrs: kind and the probe parameters.
    """
    if kind not in PROBE_KINDS:
        raise ValueError(f"kind must be one of {list(PROBE_KINDS)}; got {kind!r}")
    probe_class = LinearProbe if kind == "torch" else SklearnProbe
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed")
    names: list[str] = []
    rows: list[list[float]] = []
    items = train.items() if isinstance(train, Mapping) else train
    for name, (X, y) in items:
        if name not in test:
            raise ValueError(f"layer {name!r} is in train but not in test (test has {list(test)})")
        X_test, y_test = test[name]
        row = []
        for seed in seeds:
            probe = probe_class(seed=seed, **probe_params).fit(X, y)
            row.append(probe.score(X_test, y_test))
        names.append(str(name))
        rows.append(row)
    if not names:
        raise ValueError("train is empty: give at least one layer")
    accuracy = np.array(rows)
    std = accuracy.std(axis=1, ddof=1) if len(seeds) > 1 else np.zeros(len(names))
    attrs: dict[str, str | int | float] = {"metric": "probe accuracy", "kind": kind}
    if kind == "torch":
        attrs["protocol"] = probe_params.get("protocol", "focusmim")
    attrs.update({k: v for k, v in probe_params.items() if isinstance(v, int | float | str)})
    return xr.Dataset(
        {
            "accuracy": (("layer", "seed"), accuracy),
            "accuracy_mean": ("layer", accuracy.mean(axis=1)),
            "accuracy_std": ("layer", std),
        },
        coords={"layer": np.array(names, dtype=str), "seed": np.array(seeds)},
        attrs=attrs,
    )
