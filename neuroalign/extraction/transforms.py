"""The stimulus preprocessing: Resize, CenterCrop, ToTensor and optional Normalize."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["ImageTransform", "image_transform"]


INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


class ImageTransform:
    """Resize(resize), CenterCrop(size), ToTensor and optionally Normalize(mean, std).

    Call it on one PIL image, as any torchvision transform; :meth:`batch` gives the same
    result (bit for bit) for a whole batch of uint8 pixels that are already ``size`` square,
    without a PIL round trip per image.

    Args:
        size: side of the square output in pixels (the centre crop).
        mean, std: per-channel normalisation (both or neither); None keeps pixels in [0, 1].
        resize: the resize before the crop: an int resizes the shorter side to it (keeping the
            aspect ratio), an (height, width) pair to exactly that size; None: ``size``.
        interpolation: "bilinear" (default), "bicubic" or "nearest" (antialiased).
    """

    def __init__(
        self,
        size: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        resize: int | tuple[int, int] | None = None,
        interpolation: str = "bilinear",
    ):
        from torchvision import transforms

        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ValueError(f"'size' must be a positive int; got {size!r}.")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"'interpolation' must be one of {list(INTERPOLATIONS)}; got {interpolation!r}.")
        resize = size if resize is None else resize
        if isinstance(resize, list | tuple):
            resize = (int(resize[0]), int(resize[1]))
        elif not isinstance(resize, int) or isinstance(resize, bool) or resize <= 0:
            raise ValueError(f"'resize' must be a positive int or a (height, width) pair; got {resize!r}.")
        if (mean is None) != (std is None):
            raise ValueError("Give both 'mean' and 'std' for normalisation, or neither.")
        if mean is not None and std is not None and (len(mean) != 3 or len(std) != 3):
            raise ValueError(f"'mean' and 'std' need 3 values (RGB); got {mean!r}, {std!r}.")
        self.size, self.resize, self.interpolation = size, resize, interpolation
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32)
        mode = transforms.InterpolationMode(interpolation)
        steps = [transforms.Resize(resize, interpolation=mode), transforms.CenterCrop(size),
                 transforms.ToTensor()]
        how = "" if interpolation == "bilinear" else f", {interpolation}"
        self.description = f"Resize({list(resize) if isinstance(resize, tuple) else resize}{how}) CenterCrop({size}) ToTensor"
        if mean is not None and std is not None:
            steps.append(transforms.Normalize(mean, std))
            self.description += f" Normalize(mean={list(mean)}, std={list(std)})"
        self._steps = transforms.Compose(steps)

    def __call__(self, image) -> torch.Tensor:
        return self._steps(image)

    def __repr__(self) -> str:
        return f"ImageTransform({self.description})"

    def batch(self, pixels: np.ndarray) -> torch.Tensor | None:
        """(b, H, W, 3) uint8 -> (b, 3, size, size) float32; None unless H = W = size (then
        Resize and CenterCrop would change the pixels: transform each image instead)."""
        if pixels.ndim != 4 or pixels.shape[1:] != (self.size, self.size, 3):
            return None
        if self.resize not in (self.size, (self.size, self.size)):
            return None  # resized to another size first, then cropped: not the identity
        x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).contiguous()
        x = x.float().div(255)
        if self.mean is not None and self.std is not None:
            x.sub_(self.mean[:, None, None]).div_(self.std[:, None, None])
        return x


def image_transform(
    size: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    resize: int | tuple[int, int] | None = None,
    interpolation: str = "bilinear",
) -> tuple[ImageTransform, str]:
    """The usual stimulus preprocessing: Resize, CenterCrop(size), ToTensor, Normalize.

    Args:
        size: side of the square model input in pixels.
        mean, std: per-channel normalisation (both or neither); None keeps pixels in [0, 1].
        resize, interpolation: see :class:`ImageTransform` (default: the shorter side to
            ``size``, bilinear).

    Returns:
        (transform, description): the transform (an :class:`ImageTransform`) maps an RGB PIL
        image to a float tensor (3, size, size); the description is stored in the activation
        file's attributes.
    """
    transform = ImageTransform(size, mean, std, resize, interpolation)
    return transform, transform.description
