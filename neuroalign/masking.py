"""Masks for masked-image modeling: which pixels the network does not see, and what it sees there.

Every function works on batched tensors on any device and takes an optional
``torch.Generator`` so that masks are reproducible from a seed.

Convention (as in MAE): a mask is a bool tensor of shape (N, 1, H, W), **True = hidden**.

Strategies (``STRATEGIES``): ``periphery`` (only a foveal disk at the fixation is visible),
``centre`` (the disk is hidden, the periphery visible), ``patches`` (random square patches),
``fovea`` (the fovea filter of ``neuroalign.foveation``: nothing is replaced, the periphery is
blurred; its "hidden" region is where the resolution is reduced), ``none``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torchvision.transforms.functional import gaussian_blur

from neuroalign.fixations import centre_fixations, uniform_fixations
from neuroalign.foveation import fovea_mask

__all__ = [
    "STRATEGIES", "FILLS", "DEFAULT_RATIOS", "DEFAULT_FILL", "DEFAULT_PATCH_SIZE", "MASK_KEYS",
    "parse_mask_spec", "fovea_radius", "centre_fixations", "uniform_fixations", "disk_mask",
    "periphery_mask", "centre_mask", "patch_mask", "make_mask", "fill_values", "apply_mask",
]

STRATEGIES = ("periphery", "centre", "patches", "fovea", "none")
FILLS = ("mean", "grey", "noise", "blur")
# the hidden fraction of each strategy when none is given (FocusMIM's periphery and centre
# conditions, MAE-style patches)
DEFAULT_RATIOS = {"periphery": 0.8, "centre": 0.2, "patches": 0.6}
DEFAULT_FILL = "mean"
DEFAULT_PATCH_SIZE = 8
MASK_KEYS = ("strategy", "ratio", "fill", "patch_size")


def parse_mask_spec(spec) -> dict:
    """A mask specification, complete and checked: ``{strategy, ratio, fill, patch_size}``.

    Args:
        spec: ``"STRATEGY[:RATIO[:FILL]]"`` (``"periphery"``, ``"patches:0.6:grey"``), or a
            mapping with ``strategy`` and optionally ``ratio`` (default ``DEFAULT_RATIOS`` of
            the strategy; 0.6 where the strategy takes none), ``fill`` (``DEFAULT_FILL``) and
            ``patch_size`` (``DEFAULT_PATCH_SIZE``).
    """
    if isinstance(spec, str):
        parts = spec.split(":")
        if len(parts) > 3 or not parts[0]:
            raise ValueError(f"A mask is STRATEGY[:RATIO[:FILL]]; got {spec!r}.")
        try:
            given_ratio = [float(parts[1])] if len(parts) > 1 else []
        except ValueError:
            raise ValueError(f"The ratio of mask {spec!r} is not a number.") from None
        spec = dict(zip(("strategy", "ratio", "fill"), [parts[0], *given_ratio, *parts[2:]], strict=False))
    if not isinstance(spec, Mapping):
        raise TypeError(
            "A mask is a 'STRATEGY[:RATIO[:FILL]]' string or a mapping with keys "
            f"{MASK_KEYS}; got {type(spec).__name__}."
        )
    unknown = sorted(set(spec) - set(MASK_KEYS))
    if unknown:
        raise ValueError(f"Unknown 'mask' keys {unknown}; valid keys: {MASK_KEYS}.")
    strategy = spec.get("strategy")
    if strategy not in STRATEGIES:
        raise ValueError(f"The 'mask' strategy must be one of {STRATEGIES}; got {strategy!r}.")
    fill = spec.get("fill", DEFAULT_FILL)
    if fill not in FILLS:
        raise ValueError(f"The 'mask' fill must be one of {FILLS}; got {fill!r}.")
    ratio = float(spec.get("ratio", DEFAULT_RATIOS.get(strategy, DEFAULT_RATIOS["patches"])))
    _check_ratio(ratio)
    patch_size = int(spec.get("patch_size", DEFAULT_PATCH_SIZE))
    return {"strategy": strategy, "ratio": ratio, "fill": fill, "patch_size": patch_size}


def fovea_radius(height: int, width: int, ratio: float) -> int:
    """Radius of the visible disk that leaves ``ratio`` of the image hidden.

    ``int(sqrt(H·W·(1−ratio)/π))``, as in FocusMIM: ratio 0.8 at 96 px gives r = 24, hiding
    80.5 % of the pixels.
    """
    _check_ratio(ratio)
    return int(math.sqrt(height * width * (1.0 - ratio) / math.pi))


def disk_mask(
    fixations: torch.Tensor, height: int, width: int, radius: float
) -> torch.Tensor:
    """(N, 1, H, W) bool, True outside the disk(s) of ``radius`` around the fixations.

    Args:
        fixations: (N, 2) points (y, x), or (N, K, 2) for K fixations per image: then a pixel
            is visible when it lies within ``radius`` of any of them (the union of the disks).
    """
    if fixations.dim() == 2:
        fixations = fixations.unsqueeze(1)
    if fixations.dim() != 3 or fixations.shape[-1] != 2:
        raise ValueError(
            f"fixations must have shape (N, 2) or (N, K, 2) of (y, x); got {tuple(fixations.shape)}."
        )
    device = fixations.device
    yy = torch.arange(height, device=device, dtype=torch.float32).view(1, 1, height, 1)
    xx = torch.arange(width, device=device, dtype=torch.float32).view(1, 1, 1, width)
    fy = fixations[..., 0].float()[..., None, None]
    fx = fixations[..., 1].float()[..., None, None]
    inside = ((yy - fy) ** 2 + (xx - fx) ** 2 <= float(radius) ** 2).any(dim=1)
    return (~inside).unsqueeze(1)


def periphery_mask(
    n: int,
    height: int,
    width: int,
    ratio: float = DEFAULT_RATIOS["periphery"],
    fixations: torch.Tensor | None = None,
    device=None,
) -> torch.Tensor:
    """Hide the periphery: only a foveal disk around each fixation stays visible.

    Args:
        n: batch size.
        height, width: image size in pixels.
        ratio: fraction of the image to hide; sets the disk radius (``fovea_radius``).
        fixations: (n, 2) centres (y, x) in pixels, or (n, K, 2) to see the union of K foveal
            disks (a scanpath); the image centre when None.

    Returns:
        (n, 1, H, W) bool mask, True = hidden.
    """
    if fixations is None:
        fixations = centre_fixations(n, height, width, device=device)
    return disk_mask(fixations, height, width, fovea_radius(height, width, ratio))


def centre_mask(
    n: int,
    height: int,
    width: int,
    ratio: float = DEFAULT_RATIOS["centre"],
    fixations: torch.Tensor | None = None,
    device=None,
) -> torch.Tensor:
    """Hide the fovea, show the periphery: the complement of a disk hiding ``ratio`` of the image."""
    return ~periphery_mask(n, height, width, 1.0 - ratio, fixations, device)


def patch_mask(
    n: int,
    height: int,
    width: int,
    ratio: float = DEFAULT_RATIOS["patches"],
    patch_size: int = DEFAULT_PATCH_SIZE,
    generator: torch.Generator | None = None,
    device=None,
) -> torch.Tensor:
    """Hide ``int(num_patches · ratio)`` random square patches of each image (MAE-style).

    The patches to hide are the first ones of a random permutation (argsort of uniform noise),
    so every image has exactly the same number hidden. At 96 px with 8 px patches and ratio
    0.6: 86 of the 144 patches.
    """
    _check_ratio(ratio)
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"Image size {height}×{width} is not divisible by patch_size={patch_size}."
        )
    gh, gw = height // patch_size, width // patch_size
    num_patches = gh * gw
    num_hidden = int(num_patches * ratio)
    noise = torch.rand(n, num_patches, generator=generator, device=device)
    rank = torch.argsort(torch.argsort(noise, dim=1), dim=1)
    hidden = (rank < num_hidden).view(n, 1, gh, gw)
    return hidden.repeat_interleave(patch_size, dim=2).repeat_interleave(patch_size, dim=3)


def make_mask(
    strategy: str,
    n: int,
    height: int,
    width: int,
    ratio: float,
    *,
    patch_size: int = DEFAULT_PATCH_SIZE,
    fixations: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device=None,
) -> torch.Tensor:
    """Dispatch over ``STRATEGIES``; returns (n, 1, H, W) bool, True = hidden.

    ``fixations`` ((n, 2) or (n, K, 2), default the centre) place the disk of ``periphery`` and
    ``centre`` and the fovea of ``fovea`` (the last of K fixations); ``patches`` ignores them.
    ``ratio`` is unused by ``fovea`` (its fovea is set by ``neuroalign.foveation``'s parameters).
    """
    if strategy == "periphery":
        return periphery_mask(n, height, width, ratio, fixations, device)
    if strategy == "centre":
        return centre_mask(n, height, width, ratio, fixations, device)
    if strategy == "patches":
        return patch_mask(n, height, width, ratio, patch_size, generator, device)
    if strategy == "fovea":
        if fixations is None:
            fixations = centre_fixations(n, height, width, device=device)
        if fixations.dim() == 3:
            fixations = fixations[:, -1]
        return fovea_mask(fixations, height, width)
    if strategy == "none":
        return torch.zeros(n, 1, height, width, dtype=torch.bool, device=device)
    raise ValueError(f"The masking strategy must be one of {STRATEGIES}; got {strategy!r}.")


def fill_values(
    images: torch.Tensor,
    fill: str = DEFAULT_FILL,
    generator: torch.Generator | None = None,
    blur_kernel: int = 33,
    blur_sigma: float = 100.0,
) -> torch.Tensor:
    """What the network sees in the hidden region, per pixel: (N, C, H, W).

    - ``mean``: each image's own per-channel mean colour (FocusMIM's default);
    - ``grey``: 0.5;
    - ``noise``: uniform noise in [0, 1];
    - ``blur``: the image blurred with a Gaussian (kernel 33, σ 100): incomplete masking. On
      images smaller than the kernel (≤ 16 px) the kernel shrinks to the largest odd size
      the reflect padding allows (2·side − 1).
    """
    if fill == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    if fill == "grey":
        return torch.full_like(images, 0.5)
    if fill == "noise":
        return torch.rand(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    if fill == "blur":
        side = min(images.shape[-2:])
        kernel = min(blur_kernel, 2 * side - 1)
        kernel -= 1 - kernel % 2  # odd
        return gaussian_blur(images, [kernel, kernel], [blur_sigma, blur_sigma])
    raise ValueError(f"The fill must be one of {FILLS}; got {fill!r}.")


def apply_mask(
    images: torch.Tensor,
    mask: torch.Tensor,
    fill: str = DEFAULT_FILL,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The masked view: ``images`` where visible, ``fill_values`` where ``mask`` is True."""
    if mask.shape[0] != images.shape[0] or mask.shape[-2:] != images.shape[-2:]:
        raise ValueError(
            f"Mask shape {tuple(mask.shape)} does not match images {tuple(images.shape)}."
        )
    return torch.where(mask, fill_values(images, fill, generator), images)


def _check_ratio(ratio: float) -> None:
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"The masking ratio must lie in [0, 1]; got {ratio}.")
