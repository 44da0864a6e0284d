"""The pretraining loop: masked-image modeling with a foveal mask, on any device, on 1…N processes.

Reproducibility by construction: the images of step ``s``, their crops, flips, masks and fills
all come from a generator seeded with ``(seed, s)``, and the global torch RNG is reseeded from
``(seed, s)`` at every step (for any randomness inside a model), so a run stopped at step N/2
and resumed ends with exactly the weights of an uninterrupted run. The model's initial weights
come from ``seed`` too, and so do the global NumPy and Python generators' states stored in the
checkpoint: a recipe run twice writes byte-identical checkpoints.

Several processes (``torchrun``, see :mod:`neuroalign.training.distributed`): ``batch_size`` is
the global batch. Every process builds the same global batch and trains on its slice; each
rank's loss is rescaled so that the mean over ranks (what DistributedDataParallel's gradient
averaging computes) is the loss of the whole batch. The single-process equivalent of a run on
W processes is the same recipe run without torchrun.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import math
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from neuroalign.analysis.decorrelation import decorrelation_torch
from neuroalign.interrupts import Interrupted, StopRequest, deferred_signals
from neuroalign.models import create_model
from neuroalign.objectives import MIMBatch
from neuroalign.training import augment, distributed
from neuroalign.training.checkpoint import load_checkpoint, restore_rng_states, save_checkpoint
from neuroalign.training.config import PretrainConfig, resume_conflicts
from neuroalign.training.distributed import resolve_device
from neuroalign.training.log import LOG_FIELDS, format_row, start_log
from neuroalign.views import make_view, needs_foreground

__all__ = [
    "LOG_FIELDS",
    "batch_indices",
    "learning_rate",
    "attach_foreground",
    "load_training_images",
    "make_optimizer",
    "prepare_batch",
    "pretrain",
    "resolve_device",
    "slice_batch",
    "step_generator",
    "step_seed",
]

#: The checkpoint's file name in a run folder.
CHECKPOINT_NAME = "checkpoint.pt"

def step_seed(seed: int, step: int) -> int:
    """The integer seed of every random choice at ``step`` of a run seeded with ``seed``."""
    return seed * 1_000_003 + step


def step_generator(seed: int, step: int, device) -> torch.Generator:
    """The generator of every random choice at ``step``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(step_seed(seed, step))
    return gen


def batch_indices(n_images: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Images of ``step``: epochs are seeded permutations, walked ``batch_size`` at a time.

    An epoch is ``n_images // batch_size`` steps (the incomplete last batch is dropped).
    """
    if n_images < batch_size:
        raise ValueError(f"batch_size {batch_size} is larger than the {n_images} training images.")
    per_epoch = n_images // batch_size
    epoch, position = divmod(step, per_epoch)
    order = _epoch_order(n_images, seed, epoch)
    return order[position * batch_size : (position + 1) * batch_size].copy()


@functools.lru_cache(maxsize=2)
def _epoch_order(n_images: int, seed: int, epoch: int) -> np.ndarray:
    """The epoch's seeded permutation, drawn once per epoch instead of once per step (a
    permutation of 100,000 images costs ~1 ms; the result is the same); read-only."""
    order = np.random.default_rng([seed, epoch]).permutation(n_images)
    order.flags.writeable = False
    return order


def prepare_batch(images_uint8: torch.Tensor, config: PretrainConfig, step: int, device) -> MIMBatch:
    """The (global) batch of ``step``: augmented images, the masked view the network sees, and
    the loss weights (see ``neuroalign.views.make_view``).

    Args:
        images_uint8: (N, 3, H, W) uint8 training images, or (N, 4, H, W) with a foreground
            map as the fourth channel (on any device).
        config: the run's settings.
        step: the step number (0-based).
        device: where the batch is built.
    """
    device = torch.device(device)
    idx = torch.as_tensor(batch_indices(len(images_uint8), config.batch_size, config.seed, step))
    x = images_uint8[idx.to(images_uint8.device)]
    if device.type == "cuda" and x.device.type == "cpu" and config.pin_memory:
        x = x.pin_memory()  # the caching host allocator keeps it alive until the copy is done
    x = x.to(device, non_blocking=True).float().div_(255)
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


def slice_batch(batch: MIMBatch, index: slice) -> MIMBatch:
    """The images ``index`` of every tensor field of a batch (a rank's share)."""
    values = {}
    for f in dataclasses.fields(batch):
        value = getattr(batch, f.name)
        values[f.name] = value[index] if isinstance(value, torch.Tensor) and value.ndim else value
    return dataclasses.replace(batch, **values)


def learning_rate(config: PretrainConfig, step: int) -> float:
    """Linear warm-up over ``warmup_steps`` from lr/warmup_steps to ``lr``, then constant, or
    with ``cosine_schedule`` a half cosine from ``lr`` down to ``min_lr`` at ``steps``."""
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.cosine_schedule:
        progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
        return config.min_lr + (config.lr - config.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    return config.lr


def make_optimizer(model: nn.Module, config: PretrainConfig) -> torch.optim.Optimizer:
    """Adam (FocusMIM: weight decay 1e-8 added to the gradient) or AdamW (decoupled decay)."""
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
               betas=config.betas, eps=config.eps)


def load_training_images(config: PretrainConfig, progress: bool = True) -> torch.Tensor:
    """(N, 3, H, W) uint8 training images of the configured dataset (see ``neuroalign.data.datasets``)."""
    from neuroalign.data.datasets import load_images

    return load_images(config.dataset, path=config.data_path, split=config.data_split,
                       image_size=config.image_size, max_images=config.max_images,
                       download=config.download, progress=progress)


def attach_foreground(images: torch.Tensor, config: PretrainConfig, progress: bool = True) -> torch.Tensor:
    """(N, 3, H, W) uint8 images → (N, 4, H, W) with rembg foreground maps as the 4th channel.

    The maps come from :func:`neuroalign.data.foreground.foreground_maps` with
    ``config.foreground_model`` (cached on disk, so only the first run pays for them).
    """
    from neuroalign.data.foreground import foreground_maps

    maps = torch.from_numpy(np.asarray(foreground_maps(images, model=config.foreground_model,
                                                       progress=progress)))
    return torch.cat([images, maps.to(images.device).unsqueeze(1)], dim=1)


@runtime_checkable
class _Pretrainable(Protocol):
    """What the trainer needs of a model (see ``neuroalign.objectives``)."""

    def training_loss(self, batch: MIMBatch) -> tuple[torch.Tensor, torch.Tensor]: ...


class _TrainingLoss(nn.Module):
    """``forward(batch) = model.training_loss(batch)``: the call DistributedDataParallel wraps."""

    def __init__(self, model: nn.Module):
        super().__init__()
        if not isinstance(model, _Pretrainable):
            raise TypeError(f"{type(model).__name__} has no training_loss(batch) method to pretrain")
        self.model = model

    def forward(self, batch: MIMBatch):
        return self.model.training_loss(batch)


def pretrain(
    config: PretrainConfig,
    out: str | Path,
    *,
    images: torch.Tensor | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
) -> Path:
    """Train ``config.model`` by masked-image modeling; returns the final checkpoint's path.

    Writes into the folder ``out`` (the process of rank 0 only): ``checkpoint.pt`` (latest,
    resumable) and ``log.csv`` (see :mod:`neuroalign.training.log`: loss, learning rate,
    latent decorrelation L, throughput). A folder that already holds a checkpoint is an error
    unless ``resume`` (continue it) or ``overwrite`` (start afresh). ``stop_at`` ends the run
    early at that step (with a checkpoint). SIGINT (Ctrl-C) or SIGTERM (in the main thread)
    finishes the current step, writes a checkpoint and raises
    :class:`~neuroalign.interrupts.Interrupted`; ``resume=True`` continues exactly. Under
    ``torchrun`` every process calls this function and all stop at the same step; see the
    module docstring.

    Args:
        config: the run's settings.
        out: the run folder (created).
        images: (N, 3, H, W) uint8 training images, or (N, 4, H, W) with a foreground map as
            the fourth channel; loaded from ``config.dataset`` when None.
        resume: continue from ``out/checkpoint.pt`` when it exists (same settings required,
            see ``config.RESUMABLE_CHANGES``); without one, start afresh.
        overwrite: start afresh even if ``out`` holds a checkpoint (it is deleted first).
        progress: print the settings and show a progress bar.
        stop_at: stop after this many steps in all (≤ ``config.steps``).
    """
    out = Path(out)
    ckpt_path = out / CHECKPOINT_NAME
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: continue a run, or replace it")
    if ckpt_path.exists() and not (resume or overwrite):
        raise ValueError(
            f"{ckpt_path} exists (a run of this folder): --resume (resume=True) continues it, "
            "--overwrite (overwrite=True) starts afresh."
        )
    info = distributed.setup(config.device, config.dist_backend)
    try:
        with deferred_signals() as stop, _cpu_kernels(config, info.device):
            return _pretrain(config, out, info, images, resume, progress and info.is_main,
                             stop_at, stop)
    finally:
        distributed.teardown(info)


def _cpu_kernels(config: PretrainConfig, device: torch.device):
    """On the CPU with ``channels_last``, torch's own convolutions instead of oneDNN's: with
    torch 2.14.1, oneDNN's channels-last convolution backward corrupts the heap on some CPUs
    (seen on an AMD EPYC: "corrupted size vs. prev_size", or a hang). channels_last is a GPU
    setting; on the CPU it runs for the tests, through the same code as on a GPU."""
    if device.type == "cpu" and config.channels_last:
        return torch.backends.mkldnn.flags(enabled=False)
    return contextlib.nullcontext()


def _pretrain(config, out_dir, info, images, resume, progress, stop_at, stop: StopRequest) -> Path:
    # one function (~90 lines): the loop's running state (loss sum, L, timer, log file, stop
    # request) spans steps; one step's optimisation is _train_step
    device = info.device
    share = distributed.rank_slice(config.batch_size, info)
    ckpt_path = out_dir / CHECKPOINT_NAME
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not resume:  # overwrite (checked in pretrain): the old run must not be resumed later
            ckpt_path.unlink(missing_ok=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest conv kernels
    torch.manual_seed(config.seed)  # model initialisation
    # the global NumPy and Python generators are recorded in checkpoints (for code outside the
    # trainer): seeded, so that one recipe writes the same checkpoint bytes (and SHA-256) twice
    np.random.seed(config.seed)
    random.seed(config.seed)
    model = create_model(config.model, **config.model_kwargs).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)

    start = _restore(ckpt_path, config, model, optimizer, device) if resume else 0
    images = _training_images_in_rank_order(images, config, progress, info)
    wrapped = _wrap(model, config, info)

    end = config.steps if stop_at is None else min(stop_at, config.steps)
    if progress:
        _print_settings(config, model, device, info, len(images), start, end)

    log_path = out_dir / "log.csv"
    if info.is_main:
        start_log(log_path, start)
    bar = tqdm(range(start, end), desc="pretrain", disable=not progress, initial=start,
               total=config.steps, dynamic_ncols=True)
    running_loss = torch.zeros((), device=device, dtype=torch.float64)
    # L goes into the row of the step it is computed on: None (an empty cell) on the others
    n_running, last_decorrelation, row_decorrelation, warned = 0, float("nan"), None, False
    stopping, signum, done = False, 0, start
    tick = t0 = time.perf_counter()
    model.train()
    after_step = getattr(model, "after_optimizer_step", None)  # e.g. an EMA target encoder
    log_file = log_path.open("a", newline="") if info.is_main else None
    try:
        for step in bar:
            lr = learning_rate(config, step)
            loss, latent = _train_step(wrapped, model, optimizer, images, config, step, lr, info,
                                       share)
            if after_step is not None:
                after_step(step, config.steps)
            running_loss += loss.detach().to(torch.float64)
            n_running += 1
            done = step + 1
            computed = bool(config.decorrelation_every) and done % config.decorrelation_every == 0
            if computed:
                last_decorrelation, why = _decorrelation(latent, info)
                row_decorrelation = last_decorrelation
                if why and not warned and info.is_main:  # once a run: the NaNs in the log say the rest
                    warnings.warn(f"{log_path}: decorrelation logged as NaN from step {done} "
                                  f"on: {why}", RuntimeWarning, stacklevel=3)
                    warned = True
            # a signal on any rank stops every rank after this step (one all-reduce when distributed)
            signum = distributed.max_over_ranks(stop.signum or 0, info) if done < end else 0
            stopping = signum > 0
            if done == end or stopping or computed or (config.log_every
                                                       and done % config.log_every == 0):
                mean_loss = distributed.mean_over_ranks(running_loss, info).item() / n_running
                now = time.perf_counter()
                rate = n_running * config.batch_size / (now - tick)
                if log_file is not None:
                    csv.writer(log_file).writerow(
                        format_row(done, mean_loss, lr, row_decorrelation, rate, now - t0))
                    log_file.flush()
                row_decorrelation = None
                bar.set_postfix(loss=f"{mean_loss:.4f}", L=f"{last_decorrelation:.3g}",
                                lr=f"{lr:.2g}", img_s=f"{rate:.0f}")
                running_loss.zero_()
                n_running, tick = 0, now
            if done == end or stopping or (config.checkpoint_every
                                           and done % config.checkpoint_every == 0):
                if info.is_main:
                    save_checkpoint(ckpt_path, model=model, optimizer=optimizer,
                                    config=config.to_dict(), step=done,
                                    extra={"world_size": info.world_size})
                distributed.barrier(info)
            if stopping:
                break
    finally:
        bar.close()
        if log_file is not None:
            log_file.close()
    if stopping:
        raise Interrupted(signum, ckpt_path,
                          f"checkpoint of step {done} of {config.steps} in {ckpt_path}",
                          f"pretrain(config, {str(out_dir)!r}, resume=True) continues it")
    return ckpt_path


def _seed_global(seed: int, device: torch.device) -> None:
    """``torch.manual_seed`` for the CPU and ``device`` only: the full call also seeds every
    other backend (CUDA, XPU, MTIA lazily, formatting a stack trace each), 3 ms a step."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(seed)
    elif device.type != "cpu":
        torch.manual_seed(seed)


def _train_step(wrapped, model, optimizer, images, config, step: int, lr: float, info, share):
    """One optimisation step on this rank's share of the step's batch: (scaled loss, latent)."""
    device = info.device
    _seed_global(step_seed(config.seed, step), device)  # randomness inside a model, if any
    batch = prepare_batch(images, config, step, device)
    scale = 1.0
    if info.enabled:
        total_weight = batch.loss_weight.sum()
        batch = slice_batch(batch, share)
        scale = info.world_size * batch.loss_weight.sum() / total_weight
    if config.channels_last:
        batch.inputs = batch.inputs.contiguous(memory_format=torch.channels_last)
    for group in optimizer.param_groups:
        group["lr"] = lr
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp):
        loss, latent = wrapped(batch)
    loss = loss * scale
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return loss, latent


def _restore(ckpt_path: Path, config, model, optimizer, device) -> int:
    """Load the checkpoint of the run being resumed, if any; returns the step to start from."""
    if not ckpt_path.exists():
        return 0
    state = load_checkpoint(ckpt_path, map_location=device)
    changed = resume_conflicts(state["config"], config)
    if changed:
        raise ValueError(
            f"{ckpt_path} was written with other settings ({', '.join(changed)}); use another "
            "output folder, or overwrite=True (--overwrite) to start afresh."
        )
    model.load_state_dict(state["model_state"])
    optimizer.load_state_dict(state["optimizer_state"])
    if state.get("rng_states"):
        restore_rng_states(state["rng_states"])
    return state["step"]


def _training_images_in_rank_order(given, config, progress: bool, info) -> torch.Tensor:
    """Rank 0 first: it may download and fill caches; the others then read them."""
    if info.is_main:
        images = _training_images(given, config, progress)
        distributed.barrier(info)
        return images
    distributed.barrier(info)
    return _training_images(given, config, progress=False)


def _wrap(model: nn.Module, config, info) -> Callable[[MIMBatch], Any]:
    """``training_loss`` as the module called each step: under DDP, compiled if asked."""
    wrapped: nn.Module = _TrainingLoss(model)
    if info.enabled:
        device_ids = [info.device.index] if info.device.type == "cuda" else None
        wrapped = nn.parallel.DistributedDataParallel(wrapped, device_ids=device_ids)
    if config.compile:
        return torch.compile(wrapped)
    return wrapped


def _decorrelation(latent: torch.Tensor, info) -> tuple[float, str]:
    """FocusMIM's L of the latent of the whole (global) batch, through the n×n Gram matrix,
    over the units that vary (``units="varying"``; see ``neuroalign.analysis.decorrelation``).

    Returns (L, why L is NaN: "" when it is not, or on ranks other than 0, which log nothing).
    """
    if not isinstance(latent, torch.Tensor) or latent.ndim < 2:
        got = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
        return float("nan"), f"the model's training_loss returns no latent batch (got {got})"
    with torch.no_grad():
        z = distributed.gather_rows(latent.detach().flatten(1).float(), info)
        if not info.is_main:
            return float("nan"), ""
        try:
            value = decorrelation_torch(z).item()
        except ValueError as err:  # e.g. every unit constant over the batch (all ReLUs dead)
            return float("nan"), str(err)
    if not math.isfinite(value):
        return value, "the latent holds NaN or infinite values"
    return value, ""


def _training_images(images, config: PretrainConfig, progress: bool) -> torch.Tensor:
    """The given images (checked) or the configured dataset's, with foreground maps if needed."""
    if images is None:
        images = load_training_images(config, progress)
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 \
            or images.shape[1] not in (3, 4):
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"Training images must be a uint8 tensor (N, 3 or 4, H, W); got {got}.")
    if len(images) < config.batch_size:
        raise ValueError(f"batch_size {config.batch_size} is larger than the {len(images)} training images.")
    if images.shape[1] == 3 and needs_foreground(config):
        images = attach_foreground(images, config, progress)
    return images


def _print_settings(config, model, device, info, n_images, start, end) -> None:
    n_params = sum(p.numel() for p in model.parameters())
    per_epoch = n_images // config.batch_size
    print(
        f"pretraining {config.model} ({n_params / 1e6:.2f} M parameters) on {device}"
        f"{f' × {info.world_size} processes' if info.enabled else ''}: {n_images} images at "
        f"{config.image_size} px, masking={config.masking} (ratio {config.mask_ratio}, fill "
        f"{config.fill}, loss on {config.loss_region} pixels)\n"
        f"  global batch {config.batch_size}"
        f"{f' ({config.batch_size // info.world_size} a process)' if info.enabled else ''}, "
        f"{per_epoch} steps an epoch, steps {start}→{end} of {config.steps} "
        f"(≈{config.steps / max(per_epoch, 1):.1f} epochs), {config.optimizer} lr {config.lr:g} "
        f"wd {config.weight_decay:g}"
        f"{f', warm-up {config.warmup_steps}' if config.warmup_steps else ''}"
        f"{', cosine' if config.cosine_schedule else ''}"
        f"{f', clip {config.grad_clip:g}' if config.grad_clip else ''}"
        f"{', bf16' if config.amp else ''}{', channels_last' if config.channels_last else ''}"
        f"{', compiled' if config.compile else ''}, seed {config.seed}"
    )
