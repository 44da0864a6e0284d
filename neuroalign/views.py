"""What the network sees and what it must predict: from augmented images to a ``MIMBatch``.

This is where a masking condition of the FocusMIM study is assembled, on the images' device
and from the step's generator:

1. colour jitter of the RGB images (optional, ``colour_jitter``);
2. the fixations (``fixation``): ``centre`` (the reference), ``uniform``, ``saliency`` (drawn
   from the foreground map) or ``saccades`` (a scanpath of ``n_fixations`` points starting at
   ``saccade_start``, each saccade ``saccade_amplitude`` × the image side long);
3. the mask (``masking``, ``mask_ratio``, ``patch_size``) placed at the fixations, and what
   the network sees in the hidden region (``fill``), or the fovea filter (``masking = "fovea"``);
4. the target (``target``) and the per-pixel loss weight (``loss_region``).

Targets:

- ``image``: reconstruct the clean image. With a scanpath the network sees the union of the
  foveal disks of all its fixations.
- ``next_fixation`` (the predictive form of the FocusMIM paper's Fig. 1; needs
  ``fixation = "saccades"`` with ``n_fixations`` ≥ 2 and ``masking`` ``periphery`` or
  ``fovea``): for a scanpath f_1 … f_K the input is the view at fixations f_1 … f_{K−1} (the
  union of their visible disks for ``periphery``; the fovea filter at f_{K−1} for ``fovea``),
  and the target is what the next fixation f_K reveals: the clean image inside the region
  seen at full resolution from f_K. ``MIMBatch.target`` is the clean image and the loss weight
  selects that region: with ``loss_region = "hidden"`` only its pixels that were hidden in the
  input (newly revealed by the saccade), with ``"all"`` the whole next fovea. With K = 2 the
  input is the view at fixation 1 and the target the content newly visible at fixation 2.

Loss regions (multiplied into the region above):

- ``hidden``: the hidden pixels only (the reference); every pixel when nothing is hidden
  (``masking = "none"``);
- ``all``: every pixel;
- ``foreground_weighted``: the hidden region weighted by the soft foreground map in [0, 1];
- ``foreground_only``: the hidden pixels whose foreground map is ≥ 0.5.
"""

from __future__ import annotations

import torch

from neuroalign.fixations import STARTS, first_fixations, saccade_sequences
from neuroalign.foveation import fovea_mask, foveate
from neuroalign.masking import apply_mask, disk_mask, fovea_radius, make_mask
from neuroalign.objectives import MIMBatch

__all__ = [
    "COLOUR_JITTER",
    "FIXATIONS",
    "LOSS_REGIONS",
    "TARGETS",
    "adjust_colour",
    "colour_jitter",
    "loss_weight",
    "make_view",
    "needs_foreground",
    "view_fixations",
]

FIXATIONS = ("centre", "uniform", "saliency", "saccades")
TARGETS = ("image", "next_fixation")
LOSS_REGIONS = ("hidden", "all", "foreground_weighted", "foreground_only")
#: FocusMIM's colour jitter: ColorJitter(0.8, 0.8, 0.8, 0.2) applied with probability 0.8
COLOUR_JITTER = {"brightness": 0.8, "contrast": 0.8, "saturation": 0.8, "hue": 0.2, "p": 0.8}


def make_view(
    images: torch.Tensor,
    config,
    generator: torch.Generator | None = None,
    foreground: torch.Tensor | None = None,
) -> MIMBatch:
    """Build the training batch of one step (see the module docstring for every setting).

    Args:
        images: (N, 3, H, W) augmented clean images in [0, 1].
        config: a ``PretrainConfig`` (its masking, mask_ratio, patch_size, fill, fixation,
            n_fixations, saccade_amplitude, saccade_start, target, loss_region and colour_jitter).
        generator: the step's generator (every random choice comes from it).
        foreground: (N, 1, H, W) soft foreground maps in [0, 1] cropped with the images, or
            None; needed by the ``saliency`` fixations and the ``foreground_*`` loss regions.

    Returns:
        A ``MIMBatch`` whose ``images`` and ``target`` are the (jittered) clean images.
    """
    n, _, h, w = images.shape
    device = images.device
    target = getattr(config, "target", "image")
    loss_region = config.loss_region
    needs = needs_foreground(config)
    if needs and foreground is None:
        raise ValueError(
            f"The settings {', '.join(needs)} need foreground maps, but none were given: attach rembg maps "
            "(neuroalign.data.foreground.foreground_maps) as a fourth channel of the images."
        )
    if foreground is not None and (foreground.shape[0] != n or foreground.shape[-2:] != (h, w)):
        raise ValueError(
            f"Foreground maps of shape {tuple(foreground.shape)} do not match images {tuple(images.shape)}."
        )
    if getattr(config, "colour_jitter", False):
        images = colour_jitter(images, generator=generator, **COLOUR_JITTER)

    path = view_fixations(config, n, h, w, generator, foreground, device)  # (N, K, 2)
    seen = path[:, :-1] if target == "next_fixation" else path
    if config.masking == "fovea":
        mask = fovea_mask(seen[:, -1], h, w)
        inputs = foveate(images, seen[:, -1])
    else:
        mask = make_mask(config.masking, n, h, w, config.mask_ratio, patch_size=config.patch_size,
                         fixations=seen, generator=generator, device=device)
        inputs = apply_mask(images, mask, config.fill, generator)

    if target == "next_fixation":
        if config.masking == "fovea":
            revealed = ~fovea_mask(path[:, -1], h, w)
        else:
            revealed = ~disk_mask(path[:, -1], h, w, fovea_radius(h, w, config.mask_ratio))
        region = revealed & mask if loss_region != "all" else revealed
    elif loss_region == "all" or config.masking == "none":
        region = torch.ones_like(mask)
    else:
        region = mask
    weight = loss_weight(region, loss_region, foreground).to(images.dtype)
    return MIMBatch(images=images, inputs=inputs, mask=mask, target=images, loss_weight=weight)


def needs_foreground(config) -> list[str]:
    """The settings of ``config`` that need foreground maps (empty when none does)."""
    needs = []
    if config.loss_region in ("foreground_weighted", "foreground_only"):
        needs.append(f"loss_region={config.loss_region!r}")
    fixation = getattr(config, "fixation", "centre")
    if fixation == "saliency":
        needs.append("fixation='saliency'")
    if fixation == "saccades" and getattr(config, "saccade_start", "") == "saliency":
        needs.append("saccade_start='saliency'")
    return needs


def view_fixations(
    config,
    n: int,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    saliency: torch.Tensor | None = None,
    device=None,
) -> torch.Tensor:
    """(n, K, 2) fixations (y, x) of the configured ``fixation``; K = 1 unless ``saccades``."""
    fixation = getattr(config, "fixation", "centre")
    if fixation in STARTS:
        return first_fixations(fixation, n, height, width, generator, saliency, device).unsqueeze(1)
    if fixation == "saccades":
        start = first_fixations(config.saccade_start, n, height, width, generator, saliency, device)
        amplitude = config.saccade_amplitude * min(height, width)
        return saccade_sequences(start, config.n_fixations, amplitude, height, width, generator)
    raise ValueError(f"The fixation must be one of {FIXATIONS}; got {fixation!r}.")


def loss_weight(
    region: torch.Tensor, loss_region: str, foreground: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-pixel loss weight: the bool ``region`` (N, 1, H, W), times the foreground map for
    ``foreground_weighted``, or restricted to map ≥ 0.5 for ``foreground_only``.

    Args:
        region: (N, 1, H, W) bool, the pixels the loss may cover.
        loss_region: one of ``LOSS_REGIONS``.
        foreground: (N, 1, H, W) soft maps in [0, 1] (needed by the ``foreground_*`` regions).

    Returns:
        (N, 1, H, W) float weights.
    """
    if loss_region not in LOSS_REGIONS:
        raise ValueError(f"The loss_region must be one of {LOSS_REGIONS}; got {loss_region!r}.")
    weight = region.float()
    if loss_region in ("hidden", "all"):
        return weight
    if foreground is None:
        raise ValueError(f"loss_region={loss_region!r} needs foreground maps; got None.")
    fg = foreground.float()
    if loss_region == "foreground_weighted":
        return weight * fg
    return weight * (fg >= 0.5).float()


# ----------------------------------------------------------------------------------------------
# colour jitter, batched and seeded


def colour_jitter(
    images: torch.Tensor,
    brightness: float = 0.8,
    contrast: float = 0.8,
    saturation: float = 0.8,
    hue: float = 0.2,
    p: float = 0.8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """torchvision's ``RandomApply([ColorJitter(...)], p)`` for a whole batch at once.

    Each image, with probability ``p``, gets a brightness, contrast and saturation factor drawn
    uniformly from [max(0, 1 − v), 1 + v] and a hue shift from [−hue, hue], applied in that
    fixed order (torchvision shuffles the order per image). FocusMIM's values are the defaults.

    Args:
        images: (N, 3, H, W) RGB in [0, 1].

    Returns:
        (N, 3, H, W) in [0, 1].
    """
    n, device = images.shape[0], images.device

    def factors(v):
        u = torch.rand(n, device=device, generator=generator)
        return max(0.0, 1.0 - v) + u * (1.0 + v - max(0.0, 1.0 - v))

    b, c, s = factors(brightness), factors(contrast), factors(saturation)
    h = (torch.rand(n, device=device, generator=generator) * 2 - 1) * hue
    apply = torch.rand(n, device=device, generator=generator) < p
    one = torch.ones_like(b)
    b, c, s = (torch.where(apply, f, one) for f in (b, c, s))
    h = torch.where(apply, h, torch.zeros_like(h))
    return adjust_colour(images, b, c, s, h)


def adjust_colour(
    images: torch.Tensor,
    brightness: torch.Tensor,
    contrast: torch.Tensor,
    saturation: torch.Tensor,
    hue: torch.Tensor,
) -> torch.Tensor:
    """Per-image brightness, contrast, saturation factors and hue shift, as torchvision's
    ``adjust_brightness`` / ``adjust_contrast`` / ``adjust_saturation`` / ``adjust_hue``.

    Args:
        images: (N, 3, H, W) RGB in [0, 1].
        brightness, contrast, saturation: (N,) factors (1 = unchanged).
        hue: (N,) shifts in [−0.5, 0.5] of the hue circle (0 = unchanged).
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"Colour jitter needs (N, 3, H, W) RGB images; got {tuple(images.shape)}.")

    def per_image(v):
        return v.to(images.dtype).view(-1, 1, 1, 1)

    x = (images * per_image(brightness)).clamp(0, 1)
    grey_mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
    x = (per_image(contrast) * x + (1 - per_image(contrast)) * grey_mean).clamp(0, 1)
    x = (per_image(saturation) * x + (1 - per_image(saturation)) * _grey(x)).clamp(0, 1)
    hsv = _rgb_to_hsv(x)
    hsv = torch.cat([torch.remainder(hsv[:, :1] + per_image(hue), 1.0), hsv[:, 1:]], dim=1)
    shifted = _hsv_to_rgb(hsv)
    return torch.where(per_image(hue) == 0, x, shifted)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luma with the ITU-R 601 weights torchvision uses."""
    return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    s = delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    h = torch.where(
        maxc == r, (g - b) / safe, torch.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe)
    )
    h = torch.where(delta > 0, torch.remainder(h / 6.0, 1.0), torch.zeros_like(h))
    return torch.stack([h, s, maxc], dim=1)


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    h, s, v = hsv.unbind(1)
    h6 = h * 6.0
    sector = torch.floor(h6)
    f = h6 - sector
    sector = torch.remainder(sector, 6).long()
    p = v * (1 - s)
    q = v * (1 - s * f)
    t = v * (1 - s * (1 - f))
    # rows: the (r, g, b) sources in each of the six sectors of the hue circle
    table = torch.stack([
        torch.stack([v, t, p], 0), torch.stack([q, v, p], 0), torch.stack([p, v, t], 0),
        torch.stack([p, q, v], 0), torch.stack([t, p, v], 0), torch.stack([v, p, q], 0),
    ], 0)  # (6, 3, N, H, W)
    index = sector.unsqueeze(0).unsqueeze(0).expand(1, 3, *sector.shape)
    return table.gather(0, index)[0].permute(1, 0, 2, 3)

