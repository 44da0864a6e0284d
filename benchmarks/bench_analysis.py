"""Analysis speed: our RDM and decorrelation computations vs the obvious ones, side by side.

1. RDM (correlation) of 2000 x 20000 float32 random activations:
   ``neuroalign.analysis.calc_rdm`` (torch, float64 accumulation over 4096-feature chunks) vs
   ``rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method="correlation")`` (numpy, in
   the input's float32). Also prints the largest difference between the two RDMs.
2. FocusMIM decorrelation L at n = 512, D = 18432 (the conv MAE latent, 128 x 12 x 12):
   the D x D way the reference does it (torch float32, C = ZᵀZ/(n-1)) vs the n x n Gram
   matrix (``decorrelation_torch``, float32 with float64 sums; ``decorrelation``, numpy float64).
Each timing is the median of --repeats runs (1 for rsatoolbox, the slow one).

    python benchmarks/bench_analysis.py [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import rsatoolbox
import torch

from neuroalign.analysis import calc_rdm, decorrelation, decorrelation_torch


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def dxd_reference(z: torch.Tensor) -> torch.Tensor:
    """L through the D x D correlation matrix, as FocusMIM computes it every step."""
    z = (z - z.mean(0)) / z.std(0)
    c = z.T @ z / (z.shape[0] - 1)
    d = c.shape[0]
    return (c.pow(2).sum() - c.diagonal().pow(2).sum()) / d


def bench_rdm(repeats: int, device: str) -> None:
    n, d = 2000, 20000
    x = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    ids = [f"s{i}" for i in range(n)]
    t_ours, ours = timed(lambda: calc_rdm(x, ids, "correlation", device=device), repeats)
    t_rsa, theirs = timed(
        lambda: rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method="correlation"), 1
    )
    diff = np.abs(ours.get_vectors() - theirs.get_vectors()).max()
    print(f"calc_rdm correlation, {n} x {d} float32:")
    print(f"  neuroalign (torch float64, chunks of 4096): {t_ours:7.2f} s")
    print(f"  rsatoolbox 0.3.2 (numpy float32):           {t_rsa:7.2f} s")
    print(f"  ratio rsatoolbox / neuroalign: {t_rsa / t_ours:.2f}x;  max |difference| {diff:.2e}")


def bench_decorrelation(repeats: int, device: str) -> None:
    n, d = 512, 18432
    z = torch.relu(torch.randn(n, 128, 12, 12, generator=torch.Generator().manual_seed(0)))
    z = z.reshape(n, d).to(device)
    t_dxd, l_dxd = timed(lambda: float(dxd_reference(z)), repeats)
    t_gram, l_gram = timed(lambda: float(decorrelation_torch(z)), repeats)
    z_np = z.cpu().numpy()
    t_np, l_np = timed(lambda: decorrelation(z_np, mean_abs_r=False)["L"], repeats)
    t_abs, _ = timed(lambda: decorrelation(z_np)["mean_abs_r"], 1)
    print(f"decorrelation L, n = {n}, D = {d} (ReLU of Gaussian noise):")
    print(f"  D x D, torch float32 (reference way):  {t_dxd:7.3f} s   L = {l_dxd:.6f}")
    print(f"  Gram, decorrelation_torch float32:     {t_gram:7.3f} s   L = {l_gram:.6f}")
    print(f"  Gram, decorrelation numpy float64:     {t_np:7.3f} s   L = {l_np:.6f}")
    print(
        f"  ratio D x D / Gram (torch): {t_dxd / t_gram:.1f}x;  (numpy float64): {t_dxd / t_np:.1f}x"
    )
    print(f"  decorrelation with mean |r| (D x D entries in column blocks, float64): {t_abs:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    bench_decorrelation(args.repeats, args.device)
    bench_rdm(args.repeats, args.device)


if __name__ == "__main__":
    main()
