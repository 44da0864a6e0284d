"""Linear-probe speed and accuracy: ``LinearProbe(protocol="logistic-lbfgs")`` (torch, full-batch
L-BFGS) vs scikit-learn's ``LogisticRegression`` on the same objective.

The problem of issue 11: 10 Gaussian classes in 2,000 dimensions (class means drawn once,
unit noise), 5,000 training and 2,000 test samples, float32. Both sides standardise the
features with the training mean and std and minimise the L2-regularised multinomial logistic
loss at the same C (1.0), tol (1e-4) and max_iter (100): ours is
``LinearProbe("logistic-lbfgs", device="cpu")``, the baseline
``make_pipeline(StandardScaler(), LogisticRegression())``. They run alternately, --repeats
times, after one warm-up fit each; the medians are compared, and both test accuracies are in
the row's notes.

    python benchmarks/bench_probe.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import Row, overhead  # noqa: E402

from neuroalign.analysis import LinearProbe  # noqa: E402


def gaussian_classes(n: int, d: int, n_classes: int = 10, spread: float = 0.085,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n samples of n_classes Gaussian classes in d dims (means fixed, noise seeded)."""
    means = np.random.default_rng(12345).normal(size=(n_classes, d)) * spread
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    return (means[y] + rng.normal(size=(n, d))).astype(np.float32), y


def results(quick: bool = False, repeats: int = 3) -> list[Row]:
    n, d, n_test = (2000, 800, 1000) if quick else (5000, 2000, 2000)
    spread = 0.14 if quick else 0.085  # test accuracy about 0.93 at both sizes
    X, y = gaussian_classes(n, d, spread=spread)
    X_test, y_test = gaussian_classes(n_test, d, spread=spread, seed=1)
    fits = {
        "ours": lambda: LinearProbe("logistic-lbfgs", device="cpu").fit(X, y),
        "sklearn": lambda: make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y),
    }
    for fit in fits.values():  # warm-up: imports, thread pools, torch.optim's first use
        fit()
    load = os.getloadavg()[0]
    times: dict[str, list[float]] = {name: [] for name in fits}
    fitted = {}
    for _ in range(repeats):
        for name, fit in fits.items():
            t0 = time.perf_counter()
            fitted[name] = fit()
            times[name].append(time.perf_counter() - t0)
    ours, theirs = fitted["ours"], fitted["sklearn"]
    acc_ours, acc_sk = ours.score(X_test, y_test), theirs.score(X_test, y_test)
    agree = float((ours.predict(X_test) == theirs.predict(X_test)).mean())
    notes = (
        f"test accuracy ours {acc_ours:.4f}, scikit-learn {acc_sk:.4f} (predictions agree on "
        f"{agree:.1%}); L-BFGS iterations ours {ours.n_iter_}, scikit-learn "
        f"{int(theirs[-1].n_iter_[0])}; C 1, tol 1e-4; float32 (ours) vs float64; median of "
        f"{repeats}, alternating; {torch.get_num_threads()} threads; load {load:.2f}"
    )
    return [
        overhead(
            f"linear probe, 10 classes, {n:,} × {d:,} float32 (test {n_test:,})",
            statistics.median(times["ours"]), statistics.median(times["sklearn"]),
            "StandardScaler + sklearn LogisticRegression (lbfgs)", 1.5, notes,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 × 800")
    args = parser.parse_args()
    for row in results(args.quick, args.repeats):
        print(f"{row.summary()}\n  {row.notes}")


if __name__ == "__main__":
    main()
