"""Checkpoints: one ``.pt`` file holding model, optimiser, step and the run's settings.

Every random choice of a run is derived from ``(seed, step)`` (see ``trainer.step_generator``),
so model + optimiser + step is all it takes to resume exactly.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from neuroalign.models import create_model

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
        "torch_version": torch.__version__,
        "extra": extra or {},
    }
    tmp = path.with_name(path.name + ".partial")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


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


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _unwrap(model):
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile
