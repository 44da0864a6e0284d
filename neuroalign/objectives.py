"""What a masked-image-modeling step optimises: the batch a model receives and pixel losses.

A pretrainable model implements ``training_loss(batch: MIMBatch) -> (loss, latent)``; the
trainer builds the batch (augmentation, mask, fill, loss weights) and never needs to know the
model's objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["MIMBatch", "weighted_mse"]


@dataclass
class MIMBatch:
    """One training batch.

    Attributes:
        images: (N, 3, H, W) the augmented clean images, in [0, 1].
        inputs: (N, 3, H, W) what the network sees: ``images`` with the hidden region filled.
        mask: (N, 1, H, W) bool, True = hidden.
        target: (N, 3, H, W) what the network must reconstruct (the clean images by default).
        loss_weight: (N, 1, H, W) per-pixel loss weight (the hidden region, or all pixels,
            possibly weighted by a foreground map).
    """

    images: torch.Tensor
    inputs: torch.Tensor
    mask: torch.Tensor
    target: torch.Tensor
    loss_weight: torch.Tensor


def weighted_mse(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Σ w·(prediction − target)² / Σ w over pixels and channels (a plain mean when w is None).

    Args:
        prediction, target: (N, C, H, W).
        weight: (N, 1, H, W) or (N, C, H, W) non-negative weights, or None.
    """
    err = (prediction.float() - target.float()) ** 2
    if weight is None:
        return err.mean()
    weight = weight.to(err.dtype).expand_as(err)
    return (err * weight).sum() / weight.sum().clamp(min=torch.finfo(err.dtype).tiny)
