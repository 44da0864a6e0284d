"""Pretraining throughput: neuroalign's loop vs a plain hand-written loop over the same model.

Both train the FocusMIM conv autoencoder (``conv_mae``, ~2.0 M parameters) at 32 px on CPU
with the same batch size, periphery masking (ratio 0.8, centre fixation, mean-colour fill),
loss on the hidden pixels and Adam (lr 1e-3, weight decay 1e-8), on the same smoothed-noise
images, with no crop augmentation in either.

- The plain loop is what one writes by hand: a shuffled index, the fixed foveal disk, the
  masked MSE, Adam; no logging, no checkpoints, no per-step seeding.
- neuroalign's loop (``neuroalign.training.pretrain``) adds the per-step reseeding and
  generator, the seeded epoch permutation, the view assembly (mask built per step), the loss
  log every 10 steps (a ``.item()`` sync and a CSV row) and the latent decorrelation L every
  20, and a checkpoint at the end.

What is compared is the loop's steady rate: each side is timed for N and for 2N steps (N a
multiple of 20, so both windows hold the same share of log and decorrelation steps), each run
whole (a fresh model; for neuroalign a resumed ``pretrain`` call: model, optimiser, checkpoint
load, log file, final checkpoint), and the rate is N × batch / (t(2N) − t(N)): the per-call
costs cancel. They are reported beside it (t(N) − N × the per-step time), since a short run
pays them once. Both sides alternate, --repeats times; medians.

    python benchmarks/bench_pretrain.py [--steps 20] [--batch-size 32] [--repeats 3] [--threads 0]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from neuroalign.models import create_model
from neuroalign.training import PretrainConfig, pretrain

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import Row, throughput  # noqa: E402


def smooth_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 4, size // 4, generator=g)
    x = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return (x * 255).to(torch.uint8)


def plain_loop(images: torch.Tensor, steps: int, batch_size: int) -> float:
    """Seconds of a hand-written masked-autoencoder run of ``steps`` steps, model built."""
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = create_model("conv_mae")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-8)
    size = images.shape[-1]
    radius = int(math.sqrt(size * size * 0.2 / math.pi))
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    hidden = ((yy - size // 2) ** 2 + (xx - size // 2) ** 2 > radius**2).view(1, 1, size, size)
    order = torch.randperm(len(images))
    for step in range(steps):
        idx = order[(step * batch_size) % (len(images) - batch_size + 1):][:batch_size]
        x = images[idx].float() / 255
        inputs = torch.where(hidden, x.mean(dim=(2, 3), keepdim=True), x)
        reconstruction, _ = model(inputs)
        weight = hidden.expand_as(x).float()
        loss = ((reconstruction - x) ** 2 * weight).sum() / weight.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def _config(images: torch.Tensor, steps: int, batch_size: int) -> PretrainConfig:
    return PretrainConfig(model="conv_mae", image_size=images.shape[-1], masking="periphery",
                          mask_ratio=0.8, fill="mean", loss_region="hidden",
                          random_resized_crop=False, lr=1e-3, weight_decay=1e-8,
                          batch_size=batch_size, steps=steps, log_every=10,
                          decorrelation_every=20, checkpoint_every=0, device="cpu")


def neuroalign_loop(images: torch.Tensor, steps: int, batch_size: int) -> float:
    """Seconds of a ``pretrain`` call resumed at step 1 running ``steps`` steps (the first
    step, in its own call, is the warm-up)."""
    cfg = _config(images, steps + 1, batch_size)
    with tempfile.TemporaryDirectory() as out:
        pretrain(cfg, out, images=images, progress=False, stop_at=1)
        t0 = time.perf_counter()
        pretrain(cfg, out, images=images, progress=False, resume=True)
        return time.perf_counter() - t0


def measure(steps: int, batch_size: int, repeats: int) -> dict[str, float]:
    """Median steady rates (images/s) and per-call costs (s) of both loops; see the module
    docstring."""
    images = smooth_images(max(10 * batch_size, 320))
    plain_loop(images, 2, batch_size)  # warm-up (thread pools, allocator)
    runs: dict[str, list[float]] = {"plain": [], "ours": [], "plain_fixed": [], "ours_fixed": []}
    for _ in range(repeats):
        for name, fn in (("plain", plain_loop), ("ours", neuroalign_loop)):
            short, long = fn(images, steps, batch_size), fn(images, 2 * steps, batch_size)
            per_step = max(long - short, 1e-9) / steps
            runs[name].append(batch_size / per_step)
            runs[f"{name}_fixed"].append(short - steps * per_step)
    return {name: statistics.median(values) for name, values in runs.items()}


def results(quick: bool = False) -> list[Row]:
    steps, batch_size, repeats = (20, 32, 1) if quick else (40, 32, 3)
    load = os.getloadavg()[0]
    m = measure(steps, batch_size, repeats)
    notes = (
        f"steady rate, t(2N) - t(N) with N = {steps} steps, median of {repeats}; load "
        f"{load:.1f} -> {os.getloadavg()[0]:.1f}; {torch.get_num_threads()} torch threads. "
        "Both: conv_mae 32 px, periphery mask 0.8, mean fill, hidden-pixel MSE, Adam. "
        "neuroalign also: per-step reseeding, view assembly, loss log every 10 steps, "
        "decorrelation L every 20, final checkpoint; the plain loop none of these. "
        f"Per-call cost besides the steps: neuroalign {m['ours_fixed']:.2f} s (model, "
        f"checkpoint load and save, log), plain {m['plain_fixed']:.2f} s (model)"
    )
    return [throughput(f"pretraining loop, conv_mae 32 px, batch {batch_size}, CPU",
                       m["ours"], m["plain"], "plain PyTorch loop", "images/s", 0.95, notes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--quick", action="store_true", help="the quick table row")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        for row in results(quick=True):
            print(row)
        return
    m = measure(args.steps, args.batch_size, args.repeats)
    print(f"conv_mae, 32 px, batch {args.batch_size}, N = {args.steps} steps, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}, load "
          f"{os.getloadavg()[0]:.1f}")
    print(f"plain loop      : {m['plain']:8.1f} images/s   per-call cost {m['plain_fixed']:.2f} s")
    print(f"neuroalign loop : {m['ours']:8.1f} images/s   per-call cost {m['ours_fixed']:.2f} s")
    print(f"ratio neuroalign / plain: {m['ours'] / m['plain']:.3f}")


if __name__ == "__main__":
    main()
