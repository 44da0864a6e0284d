"""What the network sees and what it must predict: from augmented images to a ``MIMBatch``.

This is where a masking condition of the FocusMIM study is assembled: the mask (strategy,
ratio, fixation), the fill of the hidden region, the prediction target and the loss region.
"""

from __future__ import annotations

import torch

from neuroalign.masking import apply_mask, make_mask
from neuroalign.objectives import MIMBatch


def make_view(
    images: torch.Tensor,
    config,
    generator: torch.Generator | None = None,
    foreground: torch.Tensor | None = None,
) -> MIMBatch:
    """Build the training batch of one step.

    Args:
        images: (N, 3, H, W) augmented clean images in [0, 1].
        config: a ``PretrainConfig`` (its masking, mask_ratio, patch_size, fill and loss_region).
        generator: the step's generator (every random choice comes from it).
        foreground: (N, 1, H, W) soft foreground maps in [0, 1] cropped with the images, or None.
    """
    n, _, h, w = images.shape
    device = images.device
    mask = make_mask(config.masking, n, h, w, config.mask_ratio, patch_size=config.patch_size,
                     generator=generator, device=device)
    if config.loss_region == "hidden" and config.masking != "none":
        weight = mask.to(images.dtype)
    else:
        weight = torch.ones_like(mask, dtype=images.dtype)
    return MIMBatch(images=images, inputs=apply_mask(images, mask, config.fill, generator),
                    mask=mask, target=images, loss_weight=weight)
