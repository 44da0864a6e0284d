"""Batched, seeded augmentation on the images' device (no per-image Python loop)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["random_horizontal_flip", "random_resized_crop", "resize"]


def random_resized_crop(
    images: torch.Tensor,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """RandomResizedCrop for a whole batch: (N, C, H, W) → (N, C, size, size).

    Each image gets a crop whose area is a uniform fraction in ``scale`` of the image and whose
    aspect ratio is log-uniform in ``ratio`` (torchvision's distribution; crops that do not fit
    are shrunk to fit rather than redrawn), resampled bilinearly with ``grid_sample``.
    """
    n, _, h, w = images.shape
    dev = images.device
    area = torch.empty(n, device=dev).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(n, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_r)
    # crop width and height as fractions of the image's
    cw = torch.sqrt(area * aspect).clamp(max=1.0)
    ch = torch.sqrt(area / aspect).clamp(max=1.0)
    # centre of the crop, so that it lies inside the image; in [-1, 1] grid coordinates
    cx = (torch.rand(n, device=dev, generator=generator) * 2 - 1) * (1 - cw)
    cy = (torch.rand(n, device=dev, generator=generator) * 2 - 1) * (1 - ch)
    theta = torch.zeros(n, 2, 3, device=dev, dtype=images.dtype)
    theta[:, 0, 0] = cw
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = ch
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [n, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_horizontal_flip(
    images: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < p
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
