"""Decorrelation speed: L, mean |r| and participation ratio from one n × n Gram matrix vs the
D × D computation.

At n = 512 stimuli and D = 18,432 units (the conv MAE latent, 128 × 12 × 12; ReLU of Gaussian
noise, float32): ``decorrelation(x, mean_abs_r=False)`` (numpy z-scores and Gram
matrix, both float64; it returns L and the participation ratio of the correlation matrix)
against the way the FocusMIM reference computes L every step (torch float32,
C = ZᵀZ/(n-1), D × D). Ours and the baseline run alternately, --repeats times; the medians
are compared. Also prints ``decorrelation_torch`` (the trainer's float32 path) for reference.

    python benchmarks/bench_decorrelation.py [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import Row, speedup  # noqa: E402

from neuroalign.analysis import decorrelation, decorrelation_torch  # noqa: E402


def dxd_reference(z: torch.Tensor) -> torch.Tensor:
    """L through the D x D correlation matrix, as FocusMIM computes it every step."""
    z = (z - z.mean(0)) / z.std(0)
    c = z.T @ z / (z.shape[0] - 1)
    d = c.shape[0]
    return (c.pow(2).sum() - c.diagonal().pow(2).sum()) / d


def latents(n: int, channels: int, side: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.relu(torch.randn(n, channels, side, side, generator=g)).reshape(n, -1)


def alternating(fns: dict, repeats: int) -> tuple[dict, dict]:
    """(median seconds, last result) of each function, run in turn `repeats` times."""
    times: dict = {name: [] for name in fns}
    out: dict = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            out[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}, out


def results(quick: bool = False, repeats: int = 5) -> list[Row]:
    n, channels = (256, 64) if quick else (512, 128)
    z = latents(n, channels)
    x = z.numpy()
    decorrelation(x[:, :1000], mean_abs_r=False)  # warm-up: imports, thread pools
    load = os.getloadavg()[0]
    t, out = alternating(
        {
            "ours": lambda: decorrelation(x, mean_abs_r=False),
            "dxd": lambda: float(dxd_reference(z)),
        },
        repeats,
    )
    l_ours, l_dxd = out["ours"]["L"], out["dxd"]
    notes = (
        f"float64 z-scores and Gram, L = {l_ours:.6f} (D × D float32: {l_dxd:.6f}, relative "
        f"difference {abs(l_ours - l_dxd) / l_ours:.1e}); also returns the participation ratio "
        f"of C ({out['ours']['participation_ratio']:.2f}); median of {repeats}, alternating; "
        f"{torch.get_num_threads()} threads; load {load:.2f}"
    )
    return [
        speedup(
            f"decorrelation L + participation ratio, n = {n}, D = {z.shape[1]:,} float32",
            t["ours"], t["dxd"], "D × D correlation matrix (FocusMIM's way, torch float32)",
            25.0, notes,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="n = 256, D = 9,216")
    args = parser.parse_args()
    for row in results(args.quick, args.repeats):
        print(f"{row.summary()}\n  {row.notes}")
    n = 256 if args.quick else 512
    z = latents(n, 64 if args.quick else 128)
    t, out = alternating({"torch": lambda: float(decorrelation_torch(z))}, args.repeats)
    print(f"decorrelation_torch (float32 Gram, the trainer's L): {t['torch']:.3f} s, "
          f"L = {out['torch']:.6f}")


if __name__ == "__main__":
    main()
