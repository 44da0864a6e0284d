"""Checkpoints: one ``.pt`` file holding model, optimiser, step and the run's settings.

Every random choice of a run is derived from ``(seed, step)`` (see ``trainer.step_generator``),
so model + optimiser + step (the data position) is all it takes to resume exactly. The
process's RNG states are stored as well, for completeness and for code outside the trainer.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from neuroalign.data.files import sha256sum as sha256_file
from neuroalign.models import create_model

__all__ = ["FORMAT", "FORMAT_VERSION", "load_checkpoint", "load_model", "restore_rng_states", "rng_states", "save_checkpoint", "sha256_file"]

FORMAT = "neuroalign-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, *, model, optimizer, config: dict, step: int, extra=None) -> Path:
    """Write atomically (temporary name, then rename): a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_name": config["model"],
        "model_kwargs": config.get("model_kwargs", {}),
        "model_state": _unwrap(model).state_dict(),
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "config": config,
        "step": step,
        "seed": config.get("seed"),
        "rng_states": rng_states(),
        "torch_version": torch.__version__,
        "extra": extra or {},
    }
    tmp = path.with_name(path.name + ".partial")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def rng_states() -> dict:
    """The random states of torch (CPU and every CUDA device), NumPy and Python's ``random``."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def restore_rng_states(states: dict) -> None:
    """Put back what :func:`rng_states` recorded (CUDA states only when the device count matches)."""
    torch.set_rng_state(states["torch"].cpu())
    cuda = states.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # torch raises several types for a damaged file
        raise ValueError(f"Checkpoint {path} cannot be read (damaged or not a torch file): {err}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a neuroalign checkpoint (no '{FORMAT}' format marker).")
    return state


def load_model(path: str | Path, device="cpu") -> tuple[torch.nn.Module, dict]:
    """The model of a checkpoint, in eval mode on ``device``, and the checkpoint's contents."""
    state = load_checkpoint(path)
    model = create_model(state["model_name"], **state["model_kwargs"])
    model.load_state_dict(state["model_state"])
    return model.to(device).eval(), state


def _unwrap(model):
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile
