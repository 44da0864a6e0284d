"""RDM speed and precision: ``neuroalign.analysis.calc_rdm`` vs rsatoolbox on float32 activations.

For 'correlation' and 'euclidean' at 2,000 × 20,000 float32 (quick: 2,000 × 10,000) random
activations with some shared structure and a large mean (where centring matters)
``calc_rdm(x, ids, method)`` (float32 products per 4,096-feature chunk summed in float64)
against ``rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method=method)`` in the same
run, alternating the two, median of --repeats (rsatoolbox's slow correlation RDM: once). The precision is the largest difference from a
plain float64 computation (1e-6 of the RDM's largest value for euclidean).

    python benchmarks/bench_rdm.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import rsatoolbox

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import Row, speedup  # noqa: E402

from neuroalign.analysis import calc_rdm  # noqa: E402

TARGETS = {"correlation": 15.0, "euclidean": 1.0}


def activations(n: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 16), dtype=np.float32) @ rng.standard_normal((16, d), dtype=np.float32)
    x += rng.standard_normal((n, d), dtype=np.float32) * 3
    x += 20.0  # a large mean: the float32 products must be shifted to keep 1e-6
    return x


def float64_rdm(x: np.ndarray, method: str) -> np.ndarray:
    """The plain float64 computation the precision is measured against (upper triangle)."""
    x = x.astype(np.float64)
    if method == "correlation":
        x = x - x.mean(axis=1, keepdims=True)
        x /= np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
        full = 1 - x @ x.T
    else:
        x = x - x.mean(axis=0)
        sq = np.einsum("ij,ij->i", x, x)
        full = (sq[:, None] + sq[None, :] - 2 * x @ x.T) / x.shape[1]
    return full[np.triu_indices(len(x), k=1)]


def alternate(fns: dict, repeats: int, once: tuple = ()) -> dict:
    """{name: (median seconds, last result)}, running the functions in turn, repeats times
    (those named in `once`: only in the first round)."""
    times: dict = {k: [] for k in fns}
    out: dict = {}
    for r in range(repeats):
        for name, fn in fns.items():
            if r and name in once:
                continue
            t0 = time.perf_counter()
            out[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {k: (statistics.median(v), out[k]) for k, v in times.items()}


def results(quick: bool = False, repeats: int = 3) -> list[Row]:
    n, d = (2000, 10000) if quick else (2000, 20000)
    x = activations(n, d)
    ids = [f"s{i}" for i in range(n)]
    rows = []
    for method, target in TARGETS.items():
        load = os.getloadavg()[0]
        timings = alternate(
            {
                "ours": lambda m=method: calc_rdm(x, ids, m).get_vectors()[0],
                "rsatoolbox": lambda m=method: rsatoolbox.rdm.calc_rdm(
                    rsatoolbox.data.Dataset(x), method=m
                ).get_vectors()[0],
            },
            repeats,
            once=("rsatoolbox",) if method == "correlation" else (),  # a minute on 2 cores
        )
        reference = float64_rdm(x, method)
        scale = 1.0 if method == "correlation" else float(np.abs(reference).max())
        errors = {k: float(np.abs(v[1] - reference).max() / scale) for k, v in timings.items()}
        rows.append(
            speedup(
                f"{method} RDM, {n} × {d} float32",
                timings["ours"][0],
                timings["rsatoolbox"][0],
                "rsatoolbox.rdm.calc_rdm",
                target,
                notes=(
                    f"max |ours − float64| {errors['ours']:.1e}, rsatoolbox's "
                    f"{errors['rsatoolbox']:.1e}"
                    + ("" if method == "correlation" else " (relative to the largest distance)")
                    + f"; load {load:.2f} → {os.getloadavg()[0]:.2f}"
                ),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for row in results(args.quick, args.repeats):
        print(f"{row.summary()}\n  {row.notes}")


if __name__ == "__main__":
    main()
