"""neuroalign: brain-alignment studies of foveal masked-image-modeling vision models.

The main entry points, importable from here:

- models: ``create_model``, ``list_models``;
- pretraining: ``pretrain``, ``load_config``;
- extraction: ``extract``, ``image_transform``, ``list_layers``;
- activation files: ``open_activations``, ``flatten``;
- workflows on activation files: ``decorrelation_from_file``, ``rsa_from_file``,
  ``layer_rdms_from_file``, ``model_similarity_from_files``, ``partition_from_files``,
  ``probe_from_files``.

Each is imported on first use, so ``import neuroalign`` stays cheap: reading activation files
and analysing them needs no PyTorch; models, pretraining and extraction do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from neuroalign._version import __version__

if TYPE_CHECKING:
    from neuroalign.activations import flatten, open_activations
    from neuroalign.extraction import extract, image_transform, list_layers
    from neuroalign.models import create_model, list_models
    from neuroalign.training import load_config, pretrain
    from neuroalign.workflows import (
        decorrelation_from_file,
        layer_rdms_from_file,
        model_similarity_from_files,
        partition_from_files,
        probe_from_files,
        rsa_from_file,
    )

# name -> the module that defines it
_LAZY = {
    "create_model": "neuroalign.models",
    "list_models": "neuroalign.models",
    "pretrain": "neuroalign.training",
    "load_config": "neuroalign.training",
    "extract": "neuroalign.extraction",
    "image_transform": "neuroalign.extraction",
    "list_layers": "neuroalign.extraction",
    "open_activations": "neuroalign.activations",
    "flatten": "neuroalign.activations",
    "decorrelation_from_file": "neuroalign.workflows",
    "rsa_from_file": "neuroalign.workflows",
    "layer_rdms_from_file": "neuroalign.workflows",
    "model_similarity_from_files": "neuroalign.workflows",
    "partition_from_files": "neuroalign.workflows",
    "probe_from_files": "neuroalign.workflows",
}

__all__ = [
    "__version__",
    "create_model",
    "list_models",
    "pretrain",
    "load_config",
    "extract",
    "image_transform",
    "list_layers",
    "open_activations",
    "flatten",
    "decorrelation_from_file",
    "rsa_from_file",
    "layer_rdms_from_file",
    "model_similarity_from_files",
    "partition_from_files",
    "probe_from_files",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'neuroalign' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
