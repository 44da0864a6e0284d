"""The fovea filter: Gaussian-pyramid foveation (Perry & Geisler 2002), batched on any device.

Resolution falls with eccentricity instead of a hard mask: each pixel is a blend of two
adjacent levels of a Gaussian pyramid chosen by its relative resolution

    R(θ) = α / (θ + α),   θ = distance to the fixation in pixels / p   (degrees),

with FocusMIM's parameters: ``levels`` = 6, pyramid blur σ = 0.248 (kernel 5),
p = 3.5 px per degree, half-resolution eccentricity α = 2.5°. Pixels with R ≥ 1/2 (θ ≤ α, i.e.
within α·p = 8.75 px of the fixation) are the full-resolution fovea and are left untouched;
each further halving of R moves one level down the pyramid.

Blending: level k (k = 0 … levels−1, level k sampled at 2^−k of full resolution) has the
Gaussian transfer function T_k(R) = 2^−(2^(k+1)·R)², which is exactly 1/2 at R = 2^−(k+1), the
edge between bands. A pixel with 2^−(k+1) < R ≤ 2^−k (1 ≤ k ≤ levels−1) takes
B·level[k−1] + (1−B)·level[k] with B = (1/2 − T_k) / (T_{k−1} − T_k), the Perry–Geisler weight
that makes the blend's transfer 1/2 at R; B runs from 1 at the band's upper edge to 0 at its
lower edge, so the image is continuous in eccentricity. Pixels with R ≤ 2^−levels take the
coarsest level. No fill: nothing is hidden, the periphery is only blurred.

Where this differs from the reference (github.com/RobinWeiler/FocusMIM, data/preprocess.py):
its band edges are the normalised bandwidths 1, 1/2, 1/4 … (so σ cancels out of them, as here)
but its transfer functions are evaluated on the unnormalised scale, which gives blending
weights outside [0, 1] and jumps at the band edges; here they agree, and all six levels are
used. Its full-resolution fovea (R ≥ 1/2) is the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neuroalign.fixations import centre_fixations

__all__ = [
    "HALF_RESOLUTION_ECCENTRICITY",
    "KERNEL_SIZE",
    "LEVELS",
    "PIXELS_PER_DEGREE",
    "SIGMA",
    "blending_weights",
    "fovea_mask",
    "foveate",
    "gaussian_pyramid",
    "resolution_map",
]

LEVELS = 6
SIGMA = 0.248
KERNEL_SIZE = 5
PIXELS_PER_DEGREE = 3.5
HALF_RESOLUTION_ECCENTRICITY = 2.5


def gaussian_pyramid(
    images: torch.Tensor, levels: int = LEVELS, sigma: float = SIGMA, kernel_size: int = KERNEL_SIZE
) -> list[torch.Tensor]:
    """The pyramid's levels, each brought back to full size.

    Level 0 is the image; level k is level k−1 blurred (Gaussian, ``kernel_size``, ``sigma``
    in pixels, edges replicated so that even 1-pixel levels work) and halved in size with an antialiased bilinear resize. Every level is then upsampled
    bilinearly to the image size.

    Args:
        images: (N, C, H, W) float images.

    Returns:
        ``levels`` tensors of shape (N, C, H, W).
    """
    if levels < 1:
        raise ValueError(f"The pyramid needs at least 1 level; got {levels}.")
    h, w = images.shape[-2:]
    out = [images]
    level = images
    for _ in range(1, levels):
        level = _gaussian_blur(level, kernel_size, sigma)
        size = (max(level.shape[-2] // 2, 1), max(level.shape[-1] // 2, 1))
        level = F.interpolate(level, size=size, mode="bilinear", antialias=True, align_corners=False)
        out.append(F.interpolate(level, size=(h, w), mode="bilinear", align_corners=False))
    return out


def _gaussian_blur(x: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with replicated edges."""
    half = kernel_size // 2
    t = torch.arange(-half, half + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (half, half, half, half), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def resolution_map(
    fixations: torch.Tensor,
    height: int,
    width: int,
    pixels_per_degree: float = PIXELS_PER_DEGREE,
    half_resolution_eccentricity: float = HALF_RESOLUTION_ECCENTRICITY,
) -> torch.Tensor:
    """Relative resolution R = α / (θ + α) of every pixel, 1 at the fixation.

    Args:
        fixations: (N, 2) fixation points (y, x) in pixels.

    Returns:
        (N, 1, H, W) float in (0, 1].
    """
    device = fixations.device
    yy = torch.arange(height, device=device, dtype=torch.float32).view(1, height, 1)
    xx = torch.arange(width, device=device, dtype=torch.float32).view(1, 1, width)
    fy = fixations[:, 0].float().view(-1, 1, 1)
    fx = fixations[:, 1].float().view(-1, 1, 1)
    theta = torch.sqrt((yy - fy) ** 2 + (xx - fx) ** 2) / pixels_per_degree
    alpha = half_resolution_eccentricity
    return (alpha / (theta + alpha)).unsqueeze(1)


def blending_weights(resolution: torch.Tensor, levels: int = LEVELS) -> torch.Tensor:
    """Per-pixel weights of the pyramid levels (see the module docstring).

    Args:
        resolution: (N, 1, H, W) relative resolution R in (0, 1].

    Returns:
        (N, levels, H, W) non-negative weights summing to 1 over the levels; at most two
        adjacent levels are non-zero at a pixel.
    """
    r = resolution[:, 0].clamp(min=torch.finfo(torch.float32).tiny, max=1.0)
    band = torch.floor(torch.log2(1.0 / r)).long()  # 2^-(band+1) < R <= 2^-band
    k = band.clamp(1, max(levels - 1, 1))

    def transfer(level):
        return torch.exp2(-((torch.exp2(level.float() + 1) * r) ** 2))

    t_lo, t_hi = transfer(k), transfer(k - 1)
    b = ((0.5 - t_lo) / (t_hi - t_lo)).clamp(0.0, 1.0)
    weights = torch.zeros(r.shape[0], levels, *r.shape[1:], device=r.device, dtype=r.dtype)
    if levels == 1:
        return weights + 1.0
    weights.scatter_(1, (k - 1).unsqueeze(1), b.unsqueeze(1))
    weights.scatter_add_(1, k.unsqueeze(1), (1.0 - b).unsqueeze(1))
    fovea = (band <= 0).unsqueeze(1)
    coarsest = (band >= levels).unsqueeze(1)
    one_hot_first = torch.zeros_like(weights)
    one_hot_first[:, 0] = 1.0
    one_hot_last = torch.zeros_like(weights)
    one_hot_last[:, -1] = 1.0
    weights = torch.where(fovea, one_hot_first, weights)
    return torch.where(coarsest, one_hot_last, weights)


def foveate(
    images: torch.Tensor,
    fixations: torch.Tensor | None = None,
    levels: int = LEVELS,
    sigma: float = SIGMA,
    pixels_per_degree: float = PIXELS_PER_DEGREE,
    half_resolution_eccentricity: float = HALF_RESOLUTION_ECCENTRICITY,
) -> torch.Tensor:
    """The foveated images: full resolution at each fixation, blurrier with eccentricity.

    Args:
        images: (N, C, H, W) float images in [0, 1].
        fixations: (N, 2) fixation points (y, x) in pixels; the image centre (H//2, W//2) when
            None, as in the reference.

    Returns:
        (N, C, H, W) on the images' device, equal to ``images`` inside the fovea
        (``fovea_mask`` False).
    """
    n, _, h, w = images.shape
    if fixations is None:
        fixations = centre_fixations(n, h, w, device=images.device)
    if fixations.shape != (n, 2):
        raise ValueError(f"fixations must have shape ({n}, 2); got {tuple(fixations.shape)}.")
    pyramid = gaussian_pyramid(images, levels, sigma)
    weights = blending_weights(
        resolution_map(fixations, h, w, pixels_per_degree, half_resolution_eccentricity), levels
    ).to(images.dtype)
    out = torch.zeros_like(images)
    for k, level in enumerate(pyramid):
        out = out + weights[:, k : k + 1] * level
    # the fovea is exactly the image (weights 1·level 0 + 0·others may differ by rounding)
    return torch.where(weights[:, :1] == 1.0, images, out)


def fovea_mask(
    fixations: torch.Tensor,
    height: int,
    width: int,
    pixels_per_degree: float = PIXELS_PER_DEGREE,
    half_resolution_eccentricity: float = HALF_RESOLUTION_ECCENTRICITY,
) -> torch.Tensor:
    """(N, 1, H, W) bool, True where the fovea filter lowers the resolution (R < 1/2).

    The "hidden" region of the fovea-filter condition: everything farther than α·p pixels
    (8.75 px with the reference's parameters) from the fixation; the loss region of the
    reference.
    """
    r = resolution_map(fixations, height, width, pixels_per_degree, half_resolution_eccentricity)
    return r < 0.5
