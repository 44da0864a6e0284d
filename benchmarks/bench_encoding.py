"""Encoding-model speed: ``RidgeEncoder`` (himalaya, one alpha per target by inner 5-fold) vs
scikit-learn's ``RidgeCV(alphas, alpha_per_target=True)`` on the same data.

The problem of issue 13: n stimuli × d float64 features (a low-rank signal plus noise) and t
targets, 20 alphas log-spaced over 10⁻² … 10¹⁰; one fit each on all stimuli. The inner
selection differs by design: ours is a shuffled 5-fold over stimuli (the rule of
``layerwise_encoding``), scikit-learn's ``alpha_per_target`` exists only with its efficient
leave-one-out (``cv=None``); the fraction of targets given the same alpha is in the notes.
With d ≫ n ours takes the dual (kernel) form. They run alternately, ``--repeats`` times; the
medians are compared. The issue's size (1,000 × 100,000 × 5,000) needs ~0.8 GB per copy of X;
the default here is 1,000 × 20,000 × 1,000, ``--quick`` 400 × 4,000 × 300.

    python benchmarks/bench_encoding.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import RidgeCV

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import Row, speedup  # noqa: E402

from neuroalign.analysis.encoding import RidgeEncoder  # noqa: E402

ALPHAS = np.logspace(-2, 10, 20)


def problem(n: int, d: int, t: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): n × d features from 20 latent factors plus noise, n × t noisy targets."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 20))
    x = latent @ rng.standard_normal((20, d)) + rng.standard_normal((n, d))
    y = latent @ rng.standard_normal((20, t)) + 3 * rng.standard_normal((n, t))
    return x, y


def results(quick: bool = False, repeats: int | None = None) -> list[Row]:
    n, d, t = (400, 4_000, 300) if quick else (1_000, 20_000, 1_000)
    repeats = repeats or (1 if quick else 3)
    x, y = problem(n, d, t)
    ours_t, base_t = [], []
    ours = base = None
    for _ in range(repeats):  # alternate, so a change of load hits both sides
        t0 = time.perf_counter()
        ours = RidgeEncoder(ALPHAS, inner_folds=5).fit(x, y)
        ours_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        base = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(x, y)
        base_t.append(time.perf_counter() - t0)
    assert ours is not None and base is not None
    same = float(np.mean(np.isclose(ours.best_alphas_, base.alpha_)))
    notes = (f"float64, 20 alphas, ours {ours.solver_} form with inner 5-fold, scikit-learn "
             f"leave-one-out; same alpha for {same:.0%} of targets; median of {repeats}, "
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load "
             f"{os.getloadavg()[0]:.1f}")
    return [speedup(f"encoding ridge fit, {n:,} stimuli × {d:,} features × {t:,} targets",
                    statistics.median(ours_t), statistics.median(base_t),
                    "sklearn RidgeCV(alpha_per_target=True)", 5.0, notes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for row in results(args.quick, args.repeats):
        print(f"{row.summary()}\n  {row.notes}")


if __name__ == "__main__":
    main()
