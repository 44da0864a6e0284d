"""Models by name: ``create_model("conv_mae")``; ``list_models("conv*")``.

``load_model(spec)`` (`neuroalign.models.specs`) loads any model by spec — pretrained
torchvision, timm, Hugging Face and OpenCLIP models with their own preprocessing, checkpoints,
``module:`` factories — and is what the CLI uses.

neuroalign's own architectures register here; ``torchvision/<name>`` builds any torchvision
classification model (random weights unless ``weights=`` is given), and ``timm/<name>`` any timm
model (random init, ``pretrained=False``; needs the optional extra ``neuroalign[timm]``).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable

from torch import nn

from neuroalign.models import conv_mae as _conv_mae
from neuroalign.models import latent_mim as _latent_mim
from neuroalign.models import vit_mae as _vit_mae
from neuroalign.models.layout import TokenLayout, token_layout
from neuroalign.models.specs import (
    LoadedModel,
    Preprocessing,
    WeightsNotFoundError,
    build_seeded,
    load_model,
)

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    if name in _REGISTRY:
        raise ValueError(f"A model named {name!r} is registered already.")
    _REGISTRY[name] = factory


register_model("conv_mae", _conv_mae.conv_mae)
register_model("conv_mae_tiny", _conv_mae.conv_mae_tiny)
register_model("vit_mae_small", _vit_mae.vit_mae_small)
register_model("vit_mae_tiny", _vit_mae.vit_mae_tiny)
register_model("latent_mim_small", _latent_mim.latent_mim_small)
register_model("latent_mim_tiny", _latent_mim.latent_mim_tiny)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a glob pattern."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def create_model(name: str, seed: int | None = None, **kwargs) -> nn.Module:
    """Build a registered model, ``torchvision/<name>`` or ``timm/<name>``.

    Args:
        name: a registered name, ``torchvision/<name>`` or ``timm/<name>``.
        seed: seed of the random initial weights: the model is built under
            ``torch.manual_seed(seed)`` inside ``torch.random.fork_rng``, so the same seed gives
            the same weights and the global random state is left as it was. None: the global
            random state, as it stands.
        **kwargs: the model factory's own arguments.
    """
    if seed is None:
        return _build(name, **kwargs)
    return build_seeded(lambda: _build(name, **kwargs), seed)


def _build(name: str, **kwargs) -> nn.Module:
    if name.startswith("timm/"):
        return _timm_model(name.split("/", 1)[1], **kwargs)
    if name.startswith("torchvision/"):
        import torchvision

        tv_name = name.split("/", 1)[1]
        try:
            return torchvision.models.get_model(tv_name, **kwargs)
        except ValueError as err:
            close = difflib.get_close_matches(tv_name, torchvision.models.list_models(), n=5)
            raise ValueError(
                f"Unknown torchvision model {tv_name!r}; close names: {close}"
            ) from err
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.4)
        raise ValueError(
            f"Unknown model {name!r}. Registered models: {list_models()}"
            + (f"; did you mean {close[0]!r}?" if close else "")
            + " (torchvision models: 'torchvision/<name>')."
        )
    return _REGISTRY[name](**kwargs)


def _timm_model(name: str, **kwargs) -> nn.Module:
    """A timm model with random weights (no download); the error lists close timm names."""
    try:
        import timm
    except ImportError as err:
        raise ValueError(
            f"'timm/{name}' needs timm: pip install 'neuroalign[timm]' (or pip install timm)."
        ) from err
    if name not in timm.list_models():
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        raise ValueError(f"Unknown timm model {name!r}; close names: {close}.")
    return timm.create_model(name, pretrained=False, **kwargs)


__all__ = [
    "LoadedModel",
    "Preprocessing",
    "TokenLayout",
    "WeightsNotFoundError",
    "create_model",
    "list_models",
    "load_model",
    "register_model",
    "token_layout",
]
