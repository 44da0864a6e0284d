"""Encoding-model speed and memory: ``RidgeEncoder`` (himalaya, one alpha per target by inner
5-fold) vs scikit-learn's ``RidgeCV(alphas, alpha_per_target=True)`` on the same data.

The problem of issue 13: n stimuli × d features (20 latent factors plus noise, generated in
float32 feature chunks from a seed, so every process builds the same data cheaply) and t
targets, 20 alphas log-spaced over 10⁻² … 10¹⁰, one fit on all stimuli.

- Data types: ours gets float32 features (what an activation file holds); scikit-learn gets the
  same values as float64, the type its ``RidgeCV`` casts to anyway (cast outside its timer).
- Alpha selection differs by design: ours is a shuffled 5-fold over stimuli (the rule of
  ``layerwise_encoding``); scikit-learn's ``alpha_per_target`` exists only with its efficient
  leave-one-out (``cv=None``; ``cv=5`` refuses ``alpha_per_target``). The like-for-like row
  writes scikit-learn's 5-fold per-target selection by hand with ``Ridge`` (one fit per fold
  and alpha, then a refit with each target's alpha).
- With d ≫ n ours takes the dual (kernel) form: the n × n kernel from feature chunks, then
  ``KernelRidgeCV`` on it; no (d × t) primal weights are formed. scikit-learn's ``RidgeCV``
  forms them (``coef_``, t × d float64).
- Full size (1,000 × 100,000 × 5,000) runs each side in its own process and reports its time
  and peak resident memory (``ru_maxrss``) above the process's peak once the data are built.
  scikit-learn 1.9 forms the d × t weights for every alpha, so its time and memory are affine in
  the targets: it is measured at 250 and 500 targets and extrapolated to 5,000 (run directly it
  would take about half an hour and ~10 GB on this shared machine).
- 500,000 features: ours only, the kernel accumulated from generated float32 chunks of 4,096
  features (X never exists); scikit-learn would hold X in float64 (3.7 GB), its centred copy
  and 5,000 × 500,000 float64 weights for two alphas (2 × 18.6 GB): more than the 23 GB here.

    python benchmarks/bench_encoding.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import himalaya.kernel_ridge  # noqa: F401  (imported before any timer starts)
import numpy as np
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import Row, overhead, speedup  # noqa: E402

from neuroalign.analysis.encoding import RidgeEncoder  # noqa: E402

ALPHAS = np.logspace(-2, 10, 20)
CHUNK = 4096
#: BLAS threads of each side: one, as the machine's two cores are shared (threads contending
#: with other work made both sides several times slower and their ratio noisy)
THREADS = 1
FULL = (1_000, 100_000, 5_000)
WIDE = 500_000
SKLEARN_TARGETS = (250, 500)


def _latent(n: int, t: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(latent factors (n, 20), targets (n, t) float64)."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 20)).astype(np.float32)
    y = latent @ rng.standard_normal((20, t)) + 3 * rng.standard_normal((n, t))
    return latent, y


def feature_chunks(n: int, d: int, seed: int = 0):
    """The features in chunks of ``CHUNK`` columns, float32, the same for every caller."""
    latent, _ = _latent(n, 1, seed)
    for start in range(0, d, CHUNK):
        rng = np.random.default_rng([seed, start])
        width = min(CHUNK, d - start)
        yield (latent @ rng.standard_normal((20, width), dtype=np.float32)
               + rng.standard_normal((n, width), dtype=np.float32))


def problem(n: int, d: int, t: int, seed: int = 0, dtype=np.float32):
    """(x (n, d) in ``dtype``, y (n, t) float64), x filled chunk by chunk."""
    x = np.empty((n, d), dtype=dtype)
    for start, chunk in zip(range(0, d, CHUNK), feature_chunks(n, d, seed), strict=True):
        x[:, start : start + chunk.shape[1]] = chunk
    return x, _latent(n, t, seed)[1]


def _sklearn_fit(x, y):
    return RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(x, y)


def _sklearn_kfold(x, y, folds: int = 5, seed: int = 1) -> np.ndarray:
    """scikit-learn's per-target alpha by shuffled K-fold, written with Ridge; the alphas."""
    error = np.zeros((len(ALPHAS), y.shape[1]))
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(x):
        for i, alpha in enumerate(ALPHAS):
            predicted = Ridge(alpha=alpha).fit(x[train], y[train]).predict(x[test])
            error[i] += ((y[test] - predicted) ** 2).sum(axis=0)
    best = ALPHAS[error.argmin(axis=0)]
    Ridge(alpha=best).fit(x, y)
    return best


def _child(side: str, n: int, d: int, t: int) -> dict:
    """Run one side in this process: build the data, fit, report seconds and memory (bytes)."""
    from neuroalign.analysis.encoding_kernels import _centred, fit_dual, linear_kernel

    threadpool_limits(THREADS)
    if side == "wide":  # the kernel straight from generated chunks; X is never whole
        y = _latent(n, t, 0)[1]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        gram = linear_kernel(feature_chunks(n, d)).gram
        every = np.arange(n)
        fit_dual(_centred(gram, every, every), y, ALPHAS, 5, None, 1)
    else:
        x, y = problem(n, d, t, dtype=np.float32 if side == "ours" else np.float64)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        if side == "ours":
            RidgeEncoder(ALPHAS, inner_folds=5, seed=1).fit(x, y)
        else:
            _sklearn_fit(x, y)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "working": (peak - before) * 1024, "peak": peak * 1024}


def _in_process(side: str, n: int, d: int, t: int) -> dict:
    here = str(Path(__file__).resolve().parent)
    code = (f"import json, sys; sys.path.insert(0, {here!r}); import bench_encoding as b; "
            f"print(json.dumps(b._child({side!r}, {n}, {d}, {t})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])


def _gb(b: float) -> str:
    return f"{b / 2**30:.2f} GB"


def _context() -> str:
    return (f"{THREADS} BLAS thread each, load {os.getloadavg()[0]:.1f} (2 cores shared with "
            "other work)")


def _alternate(fits: dict, repeats: int) -> dict:
    """{name: (median seconds, last result)}, the fits run in turn so a change of load hits
    every side."""
    times: dict = {name: [] for name in fits}
    last: dict = {}
    for _ in range(repeats):
        for name, fit in fits.items():
            t0 = time.perf_counter()
            last[name] = fit()
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(times[name]), last[name]) for name in fits}


def _quick_rows(repeats: int) -> list[Row]:
    rows = []
    for (n, d, t), baseline in (((400, 10_000, 1_000), "loo"), ((300, 3_000, 300), "kfold")):
        x32, y = problem(n, d, t)
        x64 = x32.astype(np.float64)
        with threadpool_limits(THREADS):
            got = _alternate({
                "ours": lambda x=x32, y=y: RidgeEncoder(ALPHAS, inner_folds=5, seed=1).fit(x, y),
                "base": (lambda x=x64, y=y: _sklearn_fit(x, y).alpha_) if baseline == "loo"
                else (lambda x=x64, y=y: _sklearn_kfold(x, y)),
            }, repeats)
        (ours_s, ours), (base_s, alphas) = got["ours"], got["base"]
        same = float(np.mean(np.isclose(ours.best_alphas_, alphas)))
        size = f"{n:,} stimuli × {d:,} features × {t:,} targets"
        notes = (f"20 alphas, ours float32 {ours.solver_} form with inner 5-fold, scikit-learn "
                 f"float64; median of {repeats}, {_context()}; same alpha for {same:.0%} of "
                 "targets")
        if baseline == "loo":
            rows.append(speedup(
                f"encoding ridge fit, {size}", ours_s, base_s,
                "sklearn RidgeCV(alpha_per_target=True)", 5.0,
                f"{notes}; scikit-learn's leave-one-out selection (it forms d × t weights for "
                "every alpha)"))
        else:
            rows.append(speedup(
                f"encoding ridge fit, like-for-like 5-fold selection, {size}", ours_s, base_s,
                "sklearn Ridge per fold and alpha + refit", 5.0,
                f"{notes}; the same inner folds"))
    return rows


def results(quick: bool = False, repeats: int | None = None) -> list[Row]:
    rows = _quick_rows(repeats or (1 if quick else 3))
    if quick:
        return rows
    n, d, t = FULL
    ours = _in_process("ours", n, d, t)
    # scikit-learn's cost and memory are affine in the targets (its Gram matrix and
    # eigendecomposition once, then d × t weights per alpha): measured at two target counts and
    # extrapolated, as the 5,000 targets would take it about half an hour and ~10 GB
    points = [(tt, _in_process("sklearn", n, d, tt)) for tt in SKLEARN_TARGETS]
    (t_a, a), (t_b, b) = points

    def at(key: str) -> float:
        return a[key] + (b[key] - a[key]) * (t - t_a) / (t_b - t_a)

    rows.append(speedup(
        f"encoding ridge fit, {n:,} stimuli × {d:,} features × {t:,} targets",
        ours["seconds"], at("seconds"), "sklearn RidgeCV(alpha_per_target=True)", 5.0,
        f"20 alphas; ours float32 dual form, inner 5-fold; scikit-learn float64, leave-one-out, "
        f"measured at {t_a:,} and {t_b:,} targets ({a['seconds']:.0f} s, {b['seconds']:.0f} s; "
        f"above the data {_gb(a['working'])}, {_gb(b['working'])}) and extrapolated linearly; "
        f"memory above the data: ours {_gb(ours['working'])} (peak {_gb(ours['peak'])} with X "
        f"float32 0.37 GB), scikit-learn {_gb(at('working'))} (X float64 0.75 GB besides); "
        f"one run each in its own process, {_context()}"))
    wide = _in_process("wide", n, WIDE, t)
    rows.append(overhead(
        f"encoding dual form, {n:,} × {WIDE:,} features (streamed chunks) × {t:,} targets",
        wide["seconds"], ours["seconds"], f"ours at {d:,} features", WIDE / d,
        f"the kernel from float32 chunks of {CHUNK:,} generated on the fly (their generation "
        f"included), then the dual fit; memory above the targets {_gb(wide['working'])} (peak "
        f"{_gb(wide['peak'])}); scikit-learn not run: X float64 3.7 GB + its centred copy "
        f"3.7 GB + 5,000 × 500,000 float64 weights for the current and the best alphas, "
        f"2 × 18.6 GB, > the 23 GB of RAM; {_context()}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for row in results(args.quick, args.repeats):
        print(f"{row.summary()}\n  {row.notes}")


if __name__ == "__main__":
    main()
