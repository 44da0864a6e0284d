"""The pretraining loop: masked-image modeling with a foveal mask, on any device.

Reproducibility by construction: the images of step ``s``, their crops, flips, masks and fills
all come from a generator seeded with ``(seed, s)``, so a run stopped at step N/2 and resumed
ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from neuroalign.analysis.decorrelation import decorrelation_torch
from neuroalign.models import create_model
from neuroalign.objectives import MIMBatch
from neuroalign.training import augment
from neuroalign.training.checkpoint import load_checkpoint, save_checkpoint
from neuroalign.training.config import PretrainConfig
from neuroalign.views import make_view

LOG_FIELDS = ("step", "loss", "lr", "decorrelation", "images_per_s", "elapsed_s")


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def step_generator(seed: int, step: int, device) -> torch.Generator:
    """The generator of every random choice at ``step``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed * 1_000_003 + step)
    return gen


def batch_indices(n_images: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Images of ``step``: epochs are seeded permutations, walked ``batch_size`` at a time."""
    per_epoch = max(n_images // batch_size, 1)
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n_images)
    return order[position * batch_size : (position + 1) * batch_size]


def prepare_batch(images_uint8: torch.Tensor, config: PretrainConfig, step: int, device) -> MIMBatch:
    """The batch of ``step``: augmented images, the masked view the network sees, and the loss
    weights (see ``neuroalign.views.make_view``).

    ``images_uint8``: (N, 3, H, W) uint8 training images, or (N, 4, H, W) with a foreground
    map as the fourth channel (on any device).
    """
    idx = torch.as_tensor(batch_indices(len(images_uint8), config.batch_size, config.seed, step))
    x = images_uint8[idx.to(images_uint8.device)].to(device, non_blocking=True).float().div_(255)
    gen = step_generator(config.seed, step, device)
    if config.random_resized_crop:
        x = augment.random_resized_crop(x, config.image_size, config.crop_scale, config.crop_ratio, gen)
    else:
        x = augment.resize(x, config.image_size)
    if config.horizontal_flip:
        x = augment.random_horizontal_flip(x, generator=gen)
    foreground = None
    if x.shape[1] == 4:  # RGB + foreground map, cropped together
        x, foreground = x[:, :3], x[:, 3:]
    return make_view(x, config, gen, foreground)


def learning_rate(config: PretrainConfig, step: int) -> float:
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.cosine_schedule:
        progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
        return config.lr * 0.5 * (1 + math.cos(math.pi * progress))
    return config.lr


def load_training_images(config: PretrainConfig, progress: bool = True) -> torch.Tensor:
    """(N, 3, H, W) uint8 training images of the configured dataset."""
    if config.dataset == "cifar10":
        from neuroalign.data.cifar import load_cifar10

        stimuli = load_cifar10("train")
        images = stimuli.images
    else:
        from neuroalign.data.stimuli import StimulusSet

        stimuli = StimulusSet.from_folder(config.data_path)
        size = config.image_size
        images = np.stack([
            np.asarray(stimuli.image(i).resize((size, size)))
            for i in tqdm(range(len(stimuli)), desc="reading images", disable=not progress)
        ])
    if config.max_images:
        images = images[: config.max_images]
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def pretrain(
    config: PretrainConfig,
    out_dir: str | Path,
    *,
    images: torch.Tensor | None = None,
    resume: bool = True,
    progress: bool = True,
    stop_at: int | None = None,
) -> Path:
    """Train ``config.model`` by masked-image modeling; returns the final checkpoint's path.

    Writes into ``out_dir``: ``checkpoint.pt`` (latest, resumable), ``log.csv`` (step, loss,
    learning rate, latent decorrelation L, throughput). With ``resume`` an existing checkpoint in
    ``out_dir`` is continued. ``stop_at`` ends the run early at that step (with a checkpoint), as
    an interruption would.

    Args:
        images: (N, 3, H, W) uint8 training images; loaded from ``config.dataset`` when None.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)  # model initialisation
    model = create_model(config.model, **config.model_kwargs).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer_cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    ckpt_path = out_dir / "checkpoint.pt"
    start = 0
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, map_location=device)
        if state["config"] != config.to_dict():
            raise ValueError(
                f"{ckpt_path} was written with other settings; use another --out or resume=False."
            )
        model.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer_state"])
        start = state["step"]
    if images is None:
        images = load_training_images(config, progress)
    if device.type == "cuda":
        images = images.pin_memory()
    forward = torch.compile(model) if config.compile else model

    n_params = sum(p.numel() for p in model.parameters())
    if progress:
        print(
            f"pretraining {config.model} ({n_params / 1e6:.2f} M parameters) on {device}: "
            f"{len(images)} images at {config.image_size} px, masking={config.masking} "
            f"(ratio {config.mask_ratio}, fill {config.fill}, loss on {config.loss_region} pixels), "
            f"batch {config.batch_size}, lr {config.lr:g}, steps {start}→{config.steps}"
        )

    log_path = out_dir / "log.csv"
    _truncate_log(log_path, start)
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    bar = tqdm(range(start, end), desc="pretrain", disable=not progress, initial=start, total=config.steps)
    losses, last_decorrelation = [], float("nan")
    tick, t0 = time.perf_counter(), time.perf_counter()
    model.train()
    with log_path.open("a", newline="") as log_file:
        log = csv.writer(log_file)
        for step in bar:
            batch = prepare_batch(images, config, step, device)
            if config.channels_last:
                batch.inputs = batch.inputs.contiguous(memory_format=torch.channels_last)
            lr = learning_rate(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp):
                loss, latent = forward.training_loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            if hasattr(model, "after_optimizer_step"):  # e.g. an EMA target encoder
                model.after_optimizer_step(step, config.steps)
            losses.append(loss.item())
            if config.decorrelation_every and step % config.decorrelation_every == 0:
                with torch.no_grad():
                    last_decorrelation = decorrelation_torch(latent.detach().flatten(1).float()).item()
            done = step + 1
            if done % config.log_every == 0 or done == end:
                now = time.perf_counter()
                rate = len(losses) * config.batch_size / (now - tick)
                log.writerow([done, f"{np.mean(losses):.6g}", f"{lr:.6g}", f"{last_decorrelation:.6g}",
                              f"{rate:.1f}", f"{now - t0:.1f}"])
                log_file.flush()
                bar.set_postfix(loss=f"{np.mean(losses):.4f}", L=f"{last_decorrelation:.3g}", img_s=f"{rate:.0f}")
                losses, tick = [], now
            if done % config.checkpoint_every == 0 or done == end:
                save_checkpoint(ckpt_path, model=model, optimizer=optimizer,
                                config=config.to_dict(), step=done)
    return ckpt_path


def _truncate_log(path: Path, start: int) -> None:
    """Keep the rows of steps ≤ ``start`` (a resumed run rewrites what came after)."""
    rows = []
    if path.exists() and start > 0:
        with path.open(newline="") as f:
            rows = [r for r in csv.reader(f)][1:]
        rows = [r for r in rows if r and int(r[0]) <= start]
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(LOG_FIELDS)
        writer.writerows(rows)
    os.replace(tmp, path)
