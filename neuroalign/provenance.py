"""Provenance attributes stored in activation files: which weights, which checkpoint, which
library versions. One builder per kind, used by extraction, the CLI and the demo."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping
from pathlib import Path

__all__ = ["weights_sha256", "checkpoint_attrs", "library_versions"]


def weights_sha256(model_or_state) -> str:
    """SHA-256 of a model's weights: its state dict's names, dtypes, shapes and bytes, in order.

    Args:
        model_or_state: an ``nn.Module`` (its ``state_dict()``, buffers included) or a state
            dict.

    Returns:
        The hex digest; equal for two models exactly when every tensor is equal bit for bit
        (whatever the device they are on).
    """
    import torch

    state = model_or_state
    if callable(getattr(model_or_state, "state_dict", None)):
        state = model_or_state.state_dict()
    if not isinstance(state, Mapping):
        raise TypeError(f"Need an nn.Module or a state dict; got {type(state).__name__}.")
    digest = hashlib.sha256()
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):  # extra state: hashed by its repr
            digest.update(f"{name}\0extra\0{value!r}\0".encode())
            continue
        tensor = value.detach().to("cpu").contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def checkpoint_attrs(path: str | Path, state: Mapping) -> dict:
    """Provenance of a neuroalign checkpoint (as ``load_model`` returns its ``state``): model,
    checkpoint path and SHA-256, training steps, seed and the training masking."""
    from neuroalign.data.files import sha256sum

    cfg = state.get("config", {})
    attrs = {
        "model": str(state.get("model_name", cfg.get("model", ""))),
        "checkpoint": str(path),
        "checkpoint_sha256": sha256sum(path),
        "training_steps": int(state.get("step", 0)),
    }
    if cfg.get("seed") is not None:
        attrs["seed"] = int(cfg["seed"])
    if "masking" in cfg:
        attrs["masking"] = f"{cfg['masking']} ratio={cfg.get('mask_ratio')} fill={cfg.get('fill')}"
    return attrs


def library_versions(*modules: str) -> dict:
    """``{"<module>_version": version}`` of installed, importable modules (others left out)."""
    versions = {}
    for name in modules:
        try:
            versions[f"{name}_version"] = str(importlib.import_module(name).__version__)
        except (ImportError, AttributeError):
            continue
    return versions
