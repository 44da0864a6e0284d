"""Pretraining throughput: neuroalign's loop vs a plain hand-written loop over the same model.

Both train the FocusMIM conv autoencoder (``conv_mae``, ~2.0 M parameters) at 32 px on CPU
with the same batch size, periphery masking (ratio 0.8, centre fixation, mean-colour fill),
loss on the hidden pixels and Adam (lr 1e-3, weight decay 1e-8), on the same smoothed-noise
images, with no crop augmentation in either. The plain loop is what one writes by hand: a
shuffled index, the fixed foveal disk, the masked MSE, Adam; no logging, no checkpoints.
neuroalign's loop (``neuroalign.training.pretrain``) adds the seeded per-step generator, the
view assembly, the loss log every 10 steps and the latent decorrelation every 20, and one
checkpoint at the end. Each side runs --steps steps after one warm-up step, alternately,
--repeats times; the best images/s of each is printed, and their ratio.

    python benchmarks/bench_pretrain.py [--steps 10] [--batch-size 32] [--repeats 3] [--threads 0]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import torch
import torch.nn.functional as F

from neuroalign.models import create_model
from neuroalign.training import PretrainConfig, pretrain


def smooth_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 4, size // 4, generator=g)
    x = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return (x * 255).to(torch.uint8)


def plain_loop(images: torch.Tensor, steps: int, batch_size: int) -> float:
    """Images/s of a hand-written masked-autoencoder loop (timed after one warm-up step)."""
    torch.manual_seed(0)
    model = create_model("conv_mae")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-8)
    size = images.shape[-1]
    radius = int(math.sqrt(size * size * 0.2 / math.pi))
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    hidden = ((yy - size // 2) ** 2 + (xx - size // 2) ** 2 > radius**2).view(1, 1, size, size)
    order = torch.randperm(len(images))
    t0 = None
    for step in range(steps + 1):
        if step == 1:
            t0 = time.perf_counter()
        idx = order[(step * batch_size) % (len(images) - batch_size + 1):][:batch_size]
        x = images[idx].float() / 255
        inputs = torch.where(hidden, x.mean(dim=(2, 3), keepdim=True), x)
        reconstruction, _ = model(inputs)
        weight = hidden.expand_as(x).float()
        loss = ((reconstruction - x) ** 2 * weight).sum() / weight.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch_size / (time.perf_counter() - t0)


def neuroalign_loop(images: torch.Tensor, steps: int, batch_size: int) -> float:
    """Images/s of ``neuroalign.training.pretrain`` with the same settings (after one warm-up step)."""
    cfg = PretrainConfig(model="conv_mae", image_size=images.shape[-1], masking="periphery",
                         mask_ratio=0.8, fill="mean", loss_region="hidden", random_resized_crop=False,
                         lr=1e-3, weight_decay=1e-8, batch_size=batch_size, steps=steps + 1,
                         log_every=10, decorrelation_every=20, checkpoint_every=0, device="cpu")
    with tempfile.TemporaryDirectory() as out:
        pretrain(cfg, out, images=images, progress=False, stop_at=1)  # warm-up step
        t0 = time.perf_counter()
        pretrain(cfg, out, images=images, progress=False, resume=True)  # from step 1
        return steps * batch_size / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images = smooth_images(max(10 * args.batch_size, 320))
    print(f"conv_mae, 32 px, batch {args.batch_size}, {args.steps} timed steps, "
          f"{torch.get_num_threads()} threads, {len(images)} images")
    ours, plain = [], []
    for _ in range(args.repeats):
        plain.append(plain_loop(images, args.steps, args.batch_size))
        ours.append(neuroalign_loop(images, args.steps, args.batch_size))
    print(f"plain loop      : {max(plain):8.1f} images/s   (runs: {', '.join(f'{v:.1f}' for v in plain)})")
    print(f"neuroalign loop : {max(ours):8.1f} images/s   (runs: {', '.join(f'{v:.1f}' for v in ours)})")
    print(f"ratio neuroalign / plain: {max(ours) / max(plain):.3f}")


if __name__ == "__main__":
    main()
