"""Masking inputs at extraction time (the ``mask`` option of ``extract``)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from neuroalign import masking

__all__ = ["mask_function"]


def _stimulus_seed(seed: int, index: int) -> int:
    """A seed for one stimulus, independent of batch size and resume point."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def mask_function(mask, seed: int):
    """(fn(x (b,3,H,W), index (b,)) -> x, attrs) for the ``mask`` option of :func:`extract`.

    ``mask``: None, a callable, or a specification :func:`neuroalign.masking.parse_mask_spec`
    reads (``"periphery"``, ``"patches:0.6:grey"``, a mapping).
    """
    if mask is None:
        return None, {}
    if callable(mask):
        name = getattr(mask, "__name__", None) or repr(mask)
        return (lambda x, index: mask(x)), {"input_mask": f"callable {name}"}
    if not isinstance(mask, (str, Mapping)):
        raise TypeError(
            "'mask' must be None, a callable, a 'STRATEGY[:RATIO[:FILL]]' string or a mapping "
            f"with keys {masking.MASK_KEYS}; got {type(mask).__name__}."
        )
    spec = masking.parse_mask_spec(mask)
    strategy, ratio, fill, patch_size = (spec[k] for k in masking.MASK_KEYS)

    def fn(x: torch.Tensor, index: np.ndarray) -> torch.Tensor:
        n, _, h, w = x.shape
        if strategy == "fovea":
            from neuroalign.foveation import foveate

            return foveate(x)
        if strategy == "none":
            return x
        out = torch.empty_like(x)
        for j, i in enumerate(index):  # one generator per stimulus: reproducible anywhere
            generator = torch.Generator().manual_seed(_stimulus_seed(seed, i))
            m = masking.make_mask(
                strategy, 1, h, w, ratio, patch_size=patch_size, generator=generator
            )
            out[j : j + 1] = masking.apply_mask(x[j : j + 1], m, fill, generator)
        return out

    attrs = {
        "input_mask": f"{strategy} ratio={ratio} fill={fill}",
        "input_mask_strategy": strategy,
        "input_mask_ratio": ratio,
        "input_mask_fill": fill,
        "input_mask_seed": int(seed),
    }
    if strategy == "patches":
        attrs["input_mask_patch_size"] = patch_size
    if strategy == "fovea":
        attrs["input_mask"] = "fovea (neuroalign.foveation defaults, centre fixation)"
        for key in ("input_mask_ratio", "input_mask_fill"):
            attrs.pop(key)
    return fn, attrs

