import numpy as np
import pytest
import torch
import xarray as xr
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neuroalign.analysis.probes import PROTOCOLS, LinearProbe, SklearnProbe, layerwise_probe

STANDARDIZED = "standardized-accuracy"
LBFGS = "logistic-lbfgs"
ADAM_PROTOCOLS = [p for p in PROTOCOLS if p != LBFGS]


def gaussian_classes(n, d=32, n_classes=4, spread=0.35, seed=0, means_seed=0):
    means = np.random.default_rng(means_seed).normal(size=(n_classes, d)) * spread
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    return means[y] + rng.normal(size=(n, d)), y


def test_separable_problem_is_solved_by_both_probes():
    X, y = gaussian_classes(600, spread=3.0)
    X_test, y_test = gaussian_classes(300, spread=3.0, seed=1)
    labels = np.array(["cat", "dog", "car", "ship"])
    torch_probe = LinearProbe(lr=1e-2, batch_size=64, max_epochs=30, patience=3).fit(X, labels[y])
    assert torch_probe.score(X_test, labels[y_test]) >= 0.99
    assert set(torch_probe.predict(X_test[:20])) <= set(labels)
    assert SklearnProbe(Cs=[0.01, 1.0]).fit(X, labels[y]).score(X_test, labels[y_test]) >= 0.99


def test_torch_and_sklearn_probes_agree_on_a_noisy_problem():
    X, y = gaussian_classes(1200, spread=0.3)
    X_test, y_test = gaussian_classes(1000, spread=0.3, seed=1)
    best_possible = LogisticRegression(max_iter=2000).fit(X, y).score(X_test, y_test)
    sk_acc = SklearnProbe(Cs=5).fit(X, y).score(X_test, y_test)
    assert 0.5 < best_possible < 0.95  # a problem where the probes can disagree
    assert abs(sk_acc - best_possible) < 0.05
    for protocol in ADAM_PROTOCOLS:
        probe = LinearProbe(protocol, lr=1e-3, batch_size=128, patience=5).fit(X, y)
        assert abs(probe.score(X_test, y_test) - best_possible) < 0.05, protocol
    assert abs(LinearProbe(LBFGS).fit(X, y).score(X_test, y_test) - best_possible) < 0.05


def test_early_stopping_restores_the_best_epoch():
    # noisy training labels, clean validation labels: val accuracy peaks, then the probe overfits
    rng = np.random.default_rng(0)
    w = rng.normal(size=100)

    def make(n, flip):
        X = rng.normal(size=(n, 100))
        y = (X @ w > 0).astype(int)
        flipped = rng.random(n) < flip
        y[flipped] = 1 - y[flipped]
        return X, y

    X, y = make(80, 0.35)
    X_val, y_val = make(400, 0.0)
    probe = LinearProbe(STANDARDIZED, lr=3e-2, batch_size=16, max_epochs=100, patience=5).fit(
        X, y, X_val, y_val
    )
    history = np.array(probe.history_)
    assert probe.n_epochs_ < 100 and probe.n_epochs_ == len(history)
    assert probe.n_epochs_ - probe.best_epoch_ == 5  # stopped after `patience` epochs without gain
    assert probe.best_epoch_ == int(np.argmax(history)) + 1
    assert history[-1] < history.max()  # the last weights were worse than the kept ones
    assert probe.score(X_val, y_val) == pytest.approx(history.max(), abs=1e-6)


def test_standardisation_uses_training_statistics():
    X, y = gaussian_classes(200, seed=2)
    X = X * 5 + 3
    X[:, 4] = 7.0  # a constant feature must not divide by zero
    X_val, y_val = gaussian_classes(100, seed=3)
    probe = LinearProbe(STANDARDIZED, max_epochs=2).fit(X, y, X_val, y_val)
    np.testing.assert_allclose(probe.mean_, X.mean(0), rtol=1e-5)
    expected_scale = X.std(0)
    expected_scale[4] = 1.0
    np.testing.assert_allclose(probe.scale_, expected_scale, rtol=1e-5)
    assert np.isfinite(probe.coef_).all()
    # the automatic validation split holds out a stratified 20%
    auto = LinearProbe(STANDARDIZED, max_epochs=2).fit(X, y)
    assert not np.allclose(auto.mean_, X.mean(0), rtol=1e-6)


def test_same_seed_same_probe():
    X, y = gaussian_classes(300, seed=4)
    a = LinearProbe(lr=1e-3, max_epochs=5, batch_size=32, seed=7).fit(X, y)
    b = LinearProbe(lr=1e-3, max_epochs=5, batch_size=32, seed=7).fit(X, y)
    c = LinearProbe(lr=1e-3, max_epochs=5, batch_size=32, seed=8).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a.history_ == b.history_
    assert not np.array_equal(a.coef_, c.coef_)


def test_estimator_contract_and_errors():
    probe = LinearProbe(lr=5e-4, patience=3)
    assert probe.get_params()["lr"] == 5e-4 and clone(probe).get_params() == probe.get_params()
    X, y = gaussian_classes(50)
    with pytest.raises(ValueError, match="not fitted"):
        probe.predict(X)
    with pytest.raises(ValueError, match="'patience'.*got 0"):
        LinearProbe(patience=0).fit(X, y)
    with pytest.raises(ValueError, match="'protocol'.*got 'sklearn'"):
        LinearProbe("sklearn").fit(X, y)
    with pytest.raises(ValueError, match=r"y must have shape \(50,\)"):
        LinearProbe().fit(X, y[:-1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        LinearProbe().fit(X, np.zeros(50), X, np.zeros(50))
    fitted = LinearProbe(max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="31 features"):
        fitted.predict(X[:, :31])


def test_layerwise_probe_dataset():
    train = {
        "conv1": gaussian_classes(300, spread=0.1, seed=0),
        "conv2": gaussian_classes(300, spread=1.0, seed=0),
    }
    test = {
        "conv1": gaussian_classes(200, spread=0.1, seed=1),
        "conv2": gaussian_classes(200, spread=1.0, seed=1),
    }
    ds = layerwise_probe(train, test, kind="sklearn", seeds=(0, 1), Cs=3)
    assert ds.sizes == {"layer": 2, "seed": 2}
    np.testing.assert_allclose(ds.accuracy_mean, ds.accuracy.mean("seed"))
    np.testing.assert_allclose(ds.accuracy_std, ds.accuracy.std("seed", ddof=1))
    X, y = train["conv2"]
    expected = SklearnProbe(Cs=3, seed=1).fit(X, y).score(*test["conv2"])
    assert float(ds.accuracy.sel(layer="conv2", seed=1)) == expected
    assert (
        float(ds.accuracy_mean.sel(layer="conv2"))
        > float(ds.accuracy_mean.sel(layer="conv1")) + 0.3
    )
    torch_ds = layerwise_probe(
        train, test, kind="torch", seeds=(0, 1), lr=1e-2, max_epochs=10, batch_size=64
    )
    assert torch_ds.attrs["kind"] == "torch" and torch_ds.attrs["lr"] == 1e-2
    assert torch_ds.attrs["protocol"] == "focusmim"
    assert (torch_ds.accuracy.sel(layer="conv2") > 0.8).all()
    assert isinstance(torch_ds, xr.Dataset)
    with pytest.raises(ValueError, match="'torch', 'sklearn'.*got 'svm'"):
        layerwise_probe(train, test, kind="svm")
    with pytest.raises(ValueError, match="'conv1' is in train but not in test"):
        layerwise_probe(train, {"conv2": test["conv2"]}, kind="sklearn")


def test_focusmim_protocol_is_the_reference_readout(monkeypatch):
    # github.com/RobinWeiler/FocusMIM evaluation_utils.py: Adam(lr 1e-4, weight_decay 1e-8),
    # batch 512, range(1000) epochs, patience 10 on the validation loss, no standardisation
    assert PROTOCOLS["focusmim"] == {
        "standardize": False, "monitor": "val_loss", "stratify": False, "lr": 1e-4,
        "batch_size": 512, "max_epochs": 1000, "patience": 10, "weight_decay": 1e-8,
    }
    assert LinearProbe().protocol == "focusmim"
    seen = {}
    adam = torch.optim.Adam

    def recording_adam(params, **kwargs):
        seen.update(kwargs)
        return adam(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", recording_adam)
    X, y = gaussian_classes(100)
    LinearProbe(max_epochs=1).fit(X, y)
    assert seen == {"lr": 1e-4, "weight_decay": 1e-8}


def reference_stop(history, patience, min_improvement=1e-4):
    """The reference's rule replayed on a loss curve: (epochs run, epoch of the lowest loss)."""
    lowest, best_epoch, window = np.inf, 0, 0
    for epoch, loss in enumerate(history, start=1):
        if loss < lowest:
            window = window + 1 if lowest - loss < min_improvement else 0
            lowest, best_epoch = loss, epoch
        else:
            window += 1
        if window >= patience:
            return epoch, best_epoch
    return len(history), best_epoch


def test_focusmim_early_stopping_keeps_the_lowest_validation_loss():
    # noisy training labels, clean validation labels: the validation loss falls, then rises
    rng = np.random.default_rng(1)
    w = rng.normal(size=60)

    def make(n, flip):
        X = rng.normal(size=(n, 60))
        y = (X @ w > 0).astype(int)
        flipped = rng.random(n) < flip
        y[flipped] = 1 - y[flipped]
        return X, y

    X, y = make(100, 0.3)
    X_val, y_val = make(300, 0.0)
    probe = LinearProbe(lr=2e-2, batch_size=512, max_epochs=300, patience=4).fit(
        X, y, X_val, y_val
    )
    history = np.array(probe.history_)
    assert probe.n_epochs_ == len(history) < 300  # stopped early
    assert (probe.n_epochs_, probe.best_epoch_) == reference_stop(history, patience=4)
    assert probe.best_epoch_ == int(np.argmin(history)) + 1
    assert history[-1] > history.min() + 1e-3  # the last weights were worse than the kept ones
    # the kept weights' validation loss, recomputed from the logits (one batch: 300 <= 512)
    logits = probe.decision_function(X_val)
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert -log_p[np.arange(300), y_val].mean() == pytest.approx(history.min(), rel=1e-5)
    assert probe.val_accuracy_ == pytest.approx(probe.score(X_val, y_val), abs=1e-6)


def test_focusmim_validation_loss_is_the_mean_of_batch_means():
    X, y = gaussian_classes(200, seed=5)
    X_val, y_val = gaussian_classes(130, seed=6)
    probe = LinearProbe(batch_size=50, max_epochs=1).fit(X, y, X_val, y_val)
    logits = probe.decision_function(X_val)
    logits -= logits.max(axis=1, keepdims=True)
    nll = -(logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)))[np.arange(130), y_val]
    batch_means = [nll[i : i + 50].mean() for i in range(0, 130, 50)]  # 50, 50, 30
    assert probe.history_[0] == pytest.approx(np.mean(batch_means), rel=1e-5)
    assert abs(np.mean(batch_means) - nll.mean()) > 1e-6  # the two averages differ here


def test_focusmim_feeds_the_unstandardised_features():
    # standardising makes a probe blind to a shift and a scale of the features; the
    # reference's raw features make it see them
    X, y = gaussian_classes(300, seed=7)
    moved = X * 4.0 + 3.0
    params = dict(lr=1e-2, batch_size=64, max_epochs=3, patience=50, seed=1)
    raw_a = LinearProbe(**params).fit(X, y)
    raw_b = LinearProbe(**params).fit(moved, y)
    assert not np.allclose(raw_a.history_, raw_b.history_, rtol=1e-3)
    np.testing.assert_array_equal(raw_a.mean_, 0.0)
    np.testing.assert_array_equal(raw_a.scale_, 1.0)
    np.testing.assert_allclose(raw_a.decision_function(X), X @ raw_a.coef_.T.astype(np.float64)
                               + raw_a.intercept_, rtol=1e-5, atol=1e-6)
    std_a = LinearProbe(STANDARDIZED, **params).fit(X, y)
    std_b = LinearProbe(STANDARDIZED, **params).fit(moved, y)
    np.testing.assert_allclose(std_a.history_, std_b.history_, atol=1e-6)
    np.testing.assert_allclose(std_a.coef_, std_b.coef_, rtol=1e-3, atol=1e-4)


def sklearn_objective(Xs, y, coef, intercept, C):
    """scikit-learn's LogisticRegression objective divided by C·n: mean cross-entropy +
    ‖W‖²/(2·C·n) (multinomial; one vector for 2 classes), written out in float64."""
    logits = Xs @ coef.T + intercept
    if coef.shape[0] == 1:  # binary: logit of class 1 against 0
        logits = np.hstack([np.zeros((len(Xs), 1)), logits])
    logits = logits - logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(y)), y].mean() + (coef**2).sum() / (2 * C * len(y))


@pytest.mark.parametrize("n_classes, C", [(2, 0.3), (4, 1.0), (4, 0.05)])
def test_logistic_lbfgs_is_sklearns_logistic_regression(n_classes, C):
    X, y = gaussian_classes(500, d=40, n_classes=n_classes, spread=0.4, seed=11)
    X_test, y_test = gaussian_classes(400, d=40, n_classes=n_classes, spread=0.4, seed=12)
    ours = LinearProbe(LBFGS, C=C, max_iter=500, tol=1e-5).fit(X, y)
    theirs = make_pipeline(
        StandardScaler(), LogisticRegression(C=C, tol=1e-10, max_iter=5000)
    ).fit(X, y)
    np.testing.assert_allclose(ours.mean_, theirs[0].mean_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.scale_, theirs[0].scale_, rtol=1e-5)
    assert np.mean(ours.predict(X_test) == theirs.predict(X_test)) >= 0.995
    Xs = theirs[0].transform(X)
    optimum = sklearn_objective(Xs, y, theirs[-1].coef_, theirs[-1].intercept_, C)
    if n_classes == 2:  # one vector w = W1 - W0 in scikit-learn
        coef, intercept = ours.coef_[1:] - ours.coef_[:1], ours.intercept_[1:] - ours.intercept_[:1]
    else:  # softmax is invariant to a shift of every class; the penalty picks mean-zero rows
        coef, intercept = ours.coef_, ours.intercept_ - ours.intercept_.mean()
    reached = sklearn_objective(Xs, y, coef.astype(np.float64), intercept, C)
    assert reached == pytest.approx(optimum, rel=1e-5)
    assert ours.objective_ == pytest.approx(optimum, rel=1e-5)
    np.testing.assert_allclose(coef, theirs[-1].coef_, atol=2e-3 * np.abs(coef).max())
    assert ours.n_iter_ < 500 and np.isnan(ours.val_accuracy_)


def test_logistic_lbfgs_does_not_depend_on_row_order_or_seed():
    X, y = gaussian_classes(600, d=50, n_classes=5, spread=0.5, seed=13)
    order = np.random.default_rng(0).permutation(600)
    a = LinearProbe(LBFGS, seed=0).fit(X, y)
    b = LinearProbe(LBFGS, seed=0).fit(X, y)
    c = LinearProbe(LBFGS, seed=9).fit(X[order], y[order])
    np.testing.assert_array_equal(a.coef_, b.coef_)  # deterministic
    np.testing.assert_allclose(c.coef_, a.coef_, atol=1e-4 * np.abs(a.coef_).max())
    np.testing.assert_array_equal(c.predict(X), a.predict(X))
    X_val, y_val = gaussian_classes(200, d=50, n_classes=5, spread=0.5, seed=14)
    with_val = LinearProbe(LBFGS).fit(X, y, X_val, y_val)
    np.testing.assert_array_equal(with_val.coef_, a.coef_)  # validation data only scored
    assert with_val.val_accuracy_ == with_val.score(X_val, y_val)


def test_logistic_lbfgs_settings_and_warnings():
    X, y = gaussian_classes(200, d=20, n_classes=3, spread=0.5)
    assert PROTOCOLS[LBFGS] == {"standardize": True, "C": 1.0, "max_iter": 100, "tol": 1e-4}
    with pytest.raises(ValueError, match="'lr' parameter.*does not apply to protocol 'logistic-lbfgs'"):
        LinearProbe(LBFGS, lr=1e-3).fit(X, y)
    with pytest.raises(ValueError, match="'C' parameter.*does not apply to protocol 'focusmim'"):
        LinearProbe(C=1.0).fit(X, y)
    with pytest.raises(ValueError, match="'C' parameter of LinearProbe must be > 0"):
        LinearProbe(LBFGS, C=0.0).fit(X, y)
    with pytest.raises(ValueError, match="'max_iter'.*positive integer"):
        LinearProbe(LBFGS, max_iter=0).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        LinearProbe(LBFGS, max_iter=2, tol=1e-12).fit(X, y)
    ds = layerwise_probe({"a": (X, y)}, {"a": (X, y)}, kind="torch", protocol=LBFGS, C=0.5)
    assert ds.attrs["protocol"] == LBFGS and ds.attrs["C"] == 0.5
