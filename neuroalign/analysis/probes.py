"""Linear probes on frozen activations: the FocusMIM readout in torch, and a scikit-learn one.

FocusMIM's readout: flattened latent -> Linear(D -> n_classes), Adam (lr 1e-4), batch 512,
early stopping on a held-out validation set (patience 10), accuracy on the test set.
Both probes follow the scikit-learn estimator contract (parameters stored in __init__, work in
`fit`, learned state ending in `_`, `random_state`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neuroalign.analysis._arrays import as_matrix, check_finite

__all__ = ["PROBE_KINDS", "LinearProbe", "SklearnProbe", "layerwise_probe"]

PROBE_KINDS = ("torch", "sklearn")


def _labels(y, n: int, name: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) (one label per stimulus); got {y.shape}")
    return y


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Linear softmax readout trained with Adam and early stopping (FocusMIM protocol).

    Features are standardised with the training mean and std; the validation accuracy is
    measured after every epoch and the weights of the best epoch are restored at the end.

    Args:
        lr: Adam learning rate.
        batch_size: minibatch size.
        max_epochs: upper bound on training epochs.
        patience: stop after this many epochs without a better validation accuracy.
        weight_decay: Adam weight decay.
        device: torch device (default: cuda if available, else cpu).
        random_state: seed of the validation split, the weight init and the batch order.

    Attributes:
        classes_: (n_classes,) the labels, sorted.
        mean_, scale_: (D,) standardisation of the features.
        coef_: (n_classes, D), intercept_: (n_classes,) weights on standardised features.
        best_epoch_: epoch (1-based) whose weights were kept; n_epochs_: epochs run.
        val_accuracy_: validation accuracy of the kept weights; history_: per-epoch
            validation accuracies.
    """

    def __init__(
        self,
        lr: float = 1e-4,
        batch_size: int = 512,
        max_epochs: int = 200,
        patience: int = 10,
        weight_decay: float = 0.0,
        device=None,
        random_state: int = 0,
    ):
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.weight_decay = weight_decay
        self.device = device
        self.random_state = random_state

    def _check_params(self) -> None:
        for name in ("batch_size", "max_epochs", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(
                    f"The {name!r} parameter of LinearProbe must be a positive integer; got {value!r}"
                )
        if not self.lr > 0:
            raise ValueError(f"The 'lr' parameter of LinearProbe must be > 0; got {self.lr!r}")

    def fit(self, X, y, X_val=None, y_val=None):
        """Trains the probe.

        Args:
            X: (n, D, ...) training features (trailing dims flattened).
            y: (n,) labels.
            X_val, y_val: validation set for early stopping; if omitted, a stratified 20% of
                (X, y) chosen with random_state.

        Returns:
            self.
        """
        import torch

        self._check_params()
        X = as_matrix(X, name="X", dtype=np.float32)
        y = _labels(y, X.shape[0])
        check_finite(X, name="X")
        if (X_val is None) != (y_val is None):
            raise ValueError("give both X_val and y_val, or neither")
        if X_val is None:
            X, X_val, y, y_val = train_test_split(
                X, y, test_size=0.2, stratify=y, random_state=self.random_state
            )
        else:
            X_val = as_matrix(X_val, name="X_val", dtype=np.float32)
            y_val = _labels(y_val, X_val.shape[0], "y_val")
            if X_val.shape[1] != X.shape[1]:
                raise ValueError(f"X_val has {X_val.shape[1]} features; X has {X.shape[1]}")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"y must hold at least 2 classes; got {self.classes_.tolist()}")
        unknown = np.setdiff1d(np.unique(y_val), self.classes_)
        if unknown.size:
            raise ValueError(f"y_val holds labels absent from y: {unknown.tolist()[:20]}")

        self.mean_ = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        scale = X.std(axis=0, dtype=np.float64)
        self.scale_ = np.where(scale > 0, scale, 1.0).astype(np.float32)
        device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        xt = self._to_tensor(X, device)
        yt = torch.as_tensor(np.searchsorted(self.classes_, y), device=device)
        xv = self._to_tensor(X_val, device)
        yv = torch.as_tensor(np.searchsorted(self.classes_, y_val), device=device)

        gen = torch.Generator().manual_seed(int(self.random_state))
        n_features, n_classes = xt.shape[1], len(self.classes_)
        layer = torch.nn.Linear(n_features, n_classes)
        bound = 1.0 / np.sqrt(n_features)  # nn.Linear's default init, drawn from our generator
        with torch.no_grad():
            layer.weight.copy_((torch.rand(n_classes, n_features, generator=gen) * 2 - 1) * bound)
            layer.bias.copy_((torch.rand(n_classes, generator=gen) * 2 - 1) * bound)
        layer.to(device)
        optimizer = torch.optim.Adam(layer.parameters(), lr=self.lr, weight_decay=self.weight_decay)

        def val_accuracy() -> float:
            with torch.no_grad():
                return float((layer(xv).argmax(dim=1) == yv).float().mean())

        best_acc, best_state, best_epoch, history = -1.0, None, 0, []
        for epoch in range(1, self.max_epochs + 1):
            order = torch.randperm(xt.shape[0], generator=gen).to(device)
            for start in range(0, xt.shape[0], self.batch_size):
                batch = order[start : start + self.batch_size]
                loss = torch.nn.functional.cross_entropy(layer(xt[batch]), yt[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            acc = val_accuracy()
            history.append(acc)
            if acc > best_acc:
                best_acc, best_epoch = acc, epoch
                best_state = {k: v.detach().clone() for k, v in layer.state_dict().items()}
            elif epoch - best_epoch >= self.patience:
                break
        layer.load_state_dict(best_state)
        self.coef_ = layer.weight.detach().cpu().numpy()
        self.intercept_ = layer.bias.detach().cpu().numpy()
        self.best_epoch_, self.n_epochs_ = best_epoch, len(history)
        self.val_accuracy_, self.history_ = best_acc, history
        self.n_features_in_ = n_features
        return self

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
        random_state: passed to LogisticRegressionCV.

    Attributes:
        pipeline_: the fitted sklearn Pipeline; classes_: the labels; C_: chosen C.
    """

    def __init__(
        self,
        Cs=10,
        cv: int = 3,
        max_iter: int = 1000,
        scoring: str = "neg_log_loss",
        random_state: int = 0,
    ):
        self.Cs = Cs
        self.cv = cv
        self.scoring = scoring
        self.max_iter = max_iter
        self.random_state = random_state

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
                random_state=self.random_state,
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
        seeds: random_state of each run.
        **probe_params: parameters of the probe class (e.g. lr=1e-3, Cs=[0.1, 1]).

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
    names, accuracy = [], []
    items = train.items() if isinstance(train, Mapping) else train
    for name, (X, y) in items:
        if name not in test:
            raise ValueError(f"layer {name!r} is in train but not in test (test has {list(test)})")
        X_test, y_test = test[name]
        row = []
        for seed in seeds:
            probe = probe_class(random_state=seed, **probe_params).fit(X, y)
            row.append(probe.score(X_test, y_test))
        names.append(str(name))
        accuracy.append(row)
    if not names:
        raise ValueError("train is empty: give at least one layer")
    accuracy = np.array(accuracy)
    std = accuracy.std(axis=1, ddof=1) if len(seeds) > 1 else np.zeros(len(names))
    attrs = {"metric": "probe accuracy", "kind": kind}
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
