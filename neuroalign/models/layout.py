"""Token layouts of vision transformers: which tokens of a (batch, token, feature) output are
the class token, register tokens and the patch grid, whatever library built the model.

timm, torchvision, Hugging Face and OpenCLIP put the prefix tokens (class token, then
registers; DeiT's distillation token) before the patch tokens, in grid order; neuroalign's
ViT-MAE has no class token. `token_layout` reads the model's own attributes; extraction stores
the layout in the activation file and `tokens="cls"|"patches"|"mean"` use it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

__all__ = ["TokenLayout", "token_layout"]


@dataclasses.dataclass(frozen=True)
class TokenLayout:
    """Where the tokens of a transformer's (batch, token, feature) outputs come from.

    Attributes:
        class_tokens: tokens before the patches that summarise the image (class token; DeiT's
            distillation token too), 0 without one.
        register_tokens: register tokens after the class token(s) (DINOv2 with registers).
        patch_size: side of a square patch in pixels, or None if unknown.
    """

    class_tokens: int
    register_tokens: int = 0
    patch_size: int | None = None

    @property
    def prefix_tokens(self) -> int:
        """Tokens before the patch grid."""
        return self.class_tokens + self.register_tokens

    def attrs(self) -> dict:
        """The layout as activation-file attributes."""
        out = {"class_tokens": self.class_tokens, "register_tokens": self.register_tokens}
        if self.patch_size is not None:
            out["patch_size"] = self.patch_size
        return out


def _int(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return int(value[0])
    return int(value)


def token_layout(model: nn.Module) -> TokenLayout | None:
    """The token layout of a vision transformer from timm, torchvision, Hugging Face
    transformers, OpenCLIP or neuroalign; None for models without tokens (CNNs) or unknown
    ones."""
    m: Any = model  # the libraries' attributes, typed as tensors or modules by nn.Module
    name = type(model).__name__
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "model_type"):  # Hugging Face
        if not hasattr(config, "patch_size") or name.startswith(("Swin", "ConvNext", "ResNet")):
            return None
        if "hidden_sizes" in vars(config):  # hierarchical models without a class token
            return None
        class_tokens = {"deit": 2, "videomae": 0}.get(config.model_type, 1)
        return TokenLayout(class_tokens, int(getattr(config, "num_register_tokens", 0) or 0),
                           _int(config.patch_size))
    if hasattr(model, "num_prefix_tokens") and hasattr(model, "patch_embed"):  # timm
        registers = int(getattr(model, "num_reg_tokens", 0) or 0)
        patch = getattr(model.patch_embed, "patch_size", None)
        return TokenLayout(int(m.num_prefix_tokens) - registers, registers, _int(patch))
    if name == "VisionTransformer" and hasattr(model, "class_token") and hasattr(model, "patch_size"):
        return TokenLayout(1, 0, _int(m.patch_size))  # torchvision
    if hasattr(model, "class_embedding") and hasattr(model, "conv1"):  # OpenCLIP
        return TokenLayout(1, 0, _int(getattr(model, "patch_size", None)))
    from neuroalign.models.latent_mim import LatentMIM
    from neuroalign.models.vit_mae import ViTMAE

    if isinstance(model, ViTMAE | LatentMIM):  # patch tokens only, no class token
        return TokenLayout(0, 0, int(m.patch_size))
    return None
