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

What is compared is the loop's rate: images/s over windows of 10 steps (neuroalign's own
log.csv rows, which its loop times; the plain loop times the same windows), median over the
windows of --repeats runs a side, the two sides alternating. A window holds every step's work
(for neuroalign the log row and, every other window, the decorrelation); what a call does
outside its steps (building the model, the final checkpoint) is reported beside it, since a
short run pays it once.

    python benchmarks/bench_pretrain.py [--steps 80] [--batch-size 32] [--repeats 6] [--threads 0]
"""

from __future__ import annotations

import argparse
import csv
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


WINDOW = 10  # steps per timed window: neuroalign's log_every


def plain_loop(images: torch.Tensor, steps: int, batch_size: int) -> tuple[float, list[float]]:
    """(seconds of the whole run, model built; images/s of each window of 10 steps) of a
    hand-written masked-autoencoder loop."""
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = create_model("conv_mae")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-8)
    size = images.shape[-1]
    radius = int(math.sqrt(size * size * 0.2 / math.pi))
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    hidden = ((yy - size // 2) ** 2 + (xx - size // 2) ** 2 > radius**2).view(1, 1, size, size)
    order = torch.randperm(len(images))
    rates, tick = [], time.perf_counter()
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
        if (step + 1) % WINDOW == 0:
            now = time.perf_counter()
            rates.append(WINDOW * batch_size / (now - tick))
            tick = now
    return time.perf_counter() - t0, rates


def _config(images: torch.Tensor, steps: int, batch_size: int) -> PretrainConfig:
    return PretrainConfig(model="conv_mae", image_size=images.shape[-1], masking="periphery",
                          mask_ratio=0.8, fill="mean", loss_region="hidden",
                          random_resized_crop=False, lr=1e-3, weight_decay=1e-8,
                          batch_size=batch_size, steps=steps, log_every=WINDOW,
                          decorrelation_every=2 * WINDOW, checkpoint_every=0, device="cpu")


def neuroalign_loop(images: torch.Tensor, steps: int, batch_size: int) -> tuple[float, list[float]]:
    """(seconds of the whole ``pretrain`` call, model built, checkpoint saved; images/s of each
    window of 10 steps, as its log.csv records them: the loop's own clock, every step's work
    including the log row and the decorrelation, none of the call's setup)."""
    cfg = _config(images, steps, batch_size)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        pretrain(cfg, out, images=images, progress=False)
        seconds = time.perf_counter() - t0
        with open(Path(out) / "log.csv", newline="") as f:
            rates = [float(row["images_per_s"]) for row in csv.DictReader(f)]
    return seconds, rates


def measure(steps: int, batch_size: int, repeats: int) -> dict[str, float]:
    """Median window rates (images/s) of both loops and their median per-call costs (whole
    run minus its windows, s); the two run alternately, ``repeats`` times."""
    images = smooth_images(max(10 * batch_size, 320))
    plain_loop(images, 2, batch_size)  # warm-up (thread pools, allocator)
    runs: dict[str, list[float]] = {"plain": [], "ours": [], "plain_fixed": [], "ours_fixed": []}
    pairs = []  # ours / plain of the median window rates of two runs in a row
    for _ in range(repeats):
        medians = {}
        for name, fn in (("plain", plain_loop), ("ours", neuroalign_loop)):
            seconds, rates = fn(images, steps, batch_size)
            runs[name] += rates
            runs[f"{name}_fixed"].append(seconds - sum(WINDOW * batch_size / r for r in rates))
            medians[name] = statistics.median(rates)
        pairs.append(medians["ours"] / medians["plain"])
    out = {name: statistics.median(values) for name, values in runs.items()}
    out["pair_min"], out["pair_max"] = min(pairs), max(pairs)
    return out


def results(quick: bool = False) -> list[Row]:
    steps, batch_size, repeats = (20, 32, 1) if quick else (80, 32, 6)
    load = os.getloadavg()[0]
    m = measure(steps, batch_size, repeats)
    notes = (
        f"median images/s over windows of {WINDOW} steps ({steps} steps a run, {repeats} "
        f"run(s) a side, alternating; ours / plain of the two runs in a row: "
        f"{m['pair_min']:.2f}-{m['pair_max']:.2f}); load {load:.1f} -> {os.getloadavg()[0]:.1f}; "
        f"{torch.get_num_threads()} torch threads. Both: conv_mae 32 px, periphery mask 0.8, "
        "mean fill, hidden-pixel MSE, Adam. neuroalign's windows (its log.csv) also hold the "
        "per-step reseeding, seeded batch order, view assembly, a log row every 10 steps and "
        "the decorrelation L every 20; the plain loop does none of these. Per-call cost "
        f"outside the windows: neuroalign {m['ours_fixed']:.2f} s (model, optimiser, log "
        f"file, final checkpoint), plain {m['plain_fixed']:.2f} s (model, optimiser)"
    )
    return [throughput(f"pretraining loop, conv_mae 32 px, batch {batch_size}, CPU",
                       m["ours"], m["plain"], "plain PyTorch loop", "images/s", 0.95, notes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--quick", action="store_true", help="the quick table row")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        for row in results(quick=True):
            print(f"{row.summary()}\n  {row.notes}")
        return
    m = measure(args.steps, args.batch_size, args.repeats)
    print(f"conv_mae, 32 px, batch {args.batch_size}, {args.steps} steps a run, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}, load "
          f"{os.getloadavg()[0]:.1f}")
    print(f"plain loop      : {m['plain']:8.1f} images/s   per-call cost {m['plain_fixed']:.2f} s")
    print(f"neuroalign loop : {m['ours']:8.1f} images/s   per-call cost {m['ours_fixed']:.2f} s")
    print(f"ratio neuroalign / plain: {m['ours'] / m['plain']:.3f}")


if __name__ == "__main__":
    main()
