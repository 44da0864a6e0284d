"""Where the eye looks: fixation positions for a batch of images.

Every function returns fixation points as float tensors of (y, x) pixel coordinates on the
device of its inputs, and draws all randomness from an optional ``torch.Generator``:

- ``centre_fixations``: the image centre (H//2, W//2), FocusMIM's only fixation;
- ``uniform_fixations``: uniform over the pixel grid;
- ``saliency_fixations``: a pixel drawn with probability proportional to a saliency map (e.g.
  the rembg foreground map, ``neuroalign.data.foreground``);
- ``saccade_sequences``: scanpaths of ``n_fixations`` points, each saccade of a set amplitude.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "STARTS",
    "centre_fixations",
    "first_fixations",
    "saccade_sequences",
    "saliency_fixations",
    "uniform_fixations",
]

STARTS = ("centre", "uniform", "saliency")


def centre_fixations(n: int, height: int, width: int, device=None) -> torch.Tensor:
    """(n, 2) fixation points (y, x) at the image centre (H//2, W//2), as in the reference."""
    point = torch.tensor([height // 2, width // 2], dtype=torch.float32, device=device)
    return point.expand(n, 2).clone()


def uniform_fixations(
    n: int, height: int, width: int, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """(n, 2) fixation points (y, x) drawn uniformly over the pixel grid (integer positions)."""
    u = torch.rand(n, 2, generator=generator, device=device)
    return torch.floor(u * torch.tensor([height, width], device=device, dtype=torch.float32))


def saliency_fixations(
    saliency: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Fixation points drawn from saliency maps: pixel (y, x) with probability ∝ saliency.

    A map that is zero everywhere (no salient object found) gives a uniform draw for that image.

    Args:
        saliency: (N, 1, H, W) or (N, H, W) non-negative maps (any scale, e.g. a foreground map
            in [0, 1]).
        generator: source of randomness.

    Returns:
        (N, 2) float (y, x) pixel positions on the maps' device.
    """
    if saliency.dim() == 4:
        if saliency.shape[1] != 1:
            raise ValueError(
                f"Saliency maps must have shape (N, 1, H, W) or (N, H, W); got {tuple(saliency.shape)}."
            )
        saliency = saliency[:, 0]
    if saliency.dim() != 3:
        raise ValueError(
            f"Saliency maps must have shape (N, 1, H, W) or (N, H, W); got {tuple(saliency.shape)}."
        )
    n, h, w = saliency.shape
    weights = saliency.reshape(n, h * w).float()
    if (weights < 0).any() or not torch.isfinite(weights).all():
        raise ValueError("Saliency maps must be finite and non-negative.")
    empty = weights.sum(1, keepdim=True) <= 0
    weights = torch.where(empty, torch.ones_like(weights), weights)
    index = torch.multinomial(weights, 1, generator=generator)[:, 0]
    return torch.stack([index // w, index % w], dim=1).float()


def saccade_sequences(
    start: torch.Tensor,
    n_fixations: int,
    amplitude: float,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    tries: int = 8,
) -> torch.Tensor:
    """Scanpaths: from ``start``, ``n_fixations − 1`` saccades of length ``amplitude`` pixels.

    Each saccade goes in a uniformly random direction. Of ``tries`` random directions the first
    that lands inside the image is taken, so the amplitude is exact wherever the image allows;
    when none lands inside (amplitude larger than the image), the landing point is clipped to
    the image border and the saccade is shorter.

    Args:
        start: (N, 2) first fixations (y, x) in pixels.
        n_fixations: number of fixations per scanpath (≥ 1), the start included.
        amplitude: saccade length in pixels (≥ 0).
        height, width: image size in pixels.
        generator: source of randomness.
        tries: directions drawn per saccade before clipping.

    Returns:
        (N, n_fixations, 2) float (y, x) positions on ``start``'s device; ``[:, 0]`` is ``start``.
    """
    if n_fixations < 1:
        raise ValueError(f"n_fixations must be at least 1; got {n_fixations}.")
    if amplitude < 0:
        raise ValueError(f"The saccade amplitude must be non-negative; got {amplitude}.")
    if start.dim() != 2 or start.shape[1] != 2:
        raise ValueError(f"start must have shape (N, 2) of (y, x); got {tuple(start.shape)}.")
    n, device = start.shape[0], start.device
    upper = torch.tensor([height - 1, width - 1], dtype=torch.float32, device=device)
    path = [start.float()]
    for _ in range(n_fixations - 1):
        angle = torch.rand(n, tries, generator=generator, device=device) * (2 * math.pi)
        step = amplitude * torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1)
        landing = path[-1].unsqueeze(1) + step  # (N, tries, 2)
        inside = ((landing >= 0) & (landing <= upper)).all(-1)
        first = torch.argmax(inside.to(torch.uint8), dim=1)  # 0 when none inside
        chosen = landing[torch.arange(n, device=device), first]
        path.append(torch.minimum(chosen.clamp(min=0), upper))
    return torch.stack(path, dim=1)


def first_fixations(
    start: str,
    n: int,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    saliency: torch.Tensor | None = None,
    device=None,
) -> torch.Tensor:
    """(n, 2) fixations by name: one of ``STARTS`` (``saliency`` needs the maps)."""
    if start == "centre":
        return centre_fixations(n, height, width, device=device)
    if start == "uniform":
        return uniform_fixations(n, height, width, generator=generator, device=device)
    if start == "saliency":
        if saliency is None:
            raise ValueError(
                "Saliency fixations need saliency (foreground) maps; got None. Attach rembg "
                "foreground maps to the training images (neuroalign.data.foreground)."
            )
        return saliency_fixations(saliency, generator=generator)
    raise ValueError(f"The fixation start must be one of {STARTS}; got {start!r}.")
