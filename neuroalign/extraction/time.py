"""Time in layer outputs of video models: where a layer keeps it, bringing it to (b, time, ...),
pooling over it, and the times of its steps.

A clip batch is (b, 3, T, H, W) or (b, T, 3, H, W); a layer keeps time when its output is a
3-D convolution's (b, C, T', H', W') (or channels last, as Swin3D's), a token sequence of T'
groups of tokens (VideoMAE), or, for a model applied frame by frame (or to frame pairs), a
(b·T', ...) output. Such outputs are brought to (b, T', ...); the reductions for images
(spatial pooling, token choice, projections) then apply to every time step alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["TIME_POOLINGS", "TimeLayout", "check_time_pooling", "module_layout", "per_step",
           "pool_time", "split_time", "step_times"]

TIME_POOLINGS = ("mean", "max")


@dataclass(frozen=True)
class TimeLayout:
    """How a video model's layer outputs hold time.

    Attributes:
        channels_last: 5-D outputs are (b, T, H, W, C) (Swin3D), not (b, C, T, H, W).
        token_steps: 3-D token outputs (b, steps·S, F) are ``steps`` groups of S tokens,
            time slowest (VideoMAE: frames / tubelet size); None: tokens keep no time.
        fold: outputs with k·b rows are (b, k, ...): the model runs frame by frame (or on
            frame pairs) with time folded into the batch.
        class_tokens: token outputs are (b, class_tokens + steps·S, F): class tokens first,
            then the steps' tokens (MViT). The class tokens summarise the whole clip and
            have no time of their own: they are repeated at the start of every step,
            (b, steps, class_tokens + S, F), so token 0 of each step stays the class token.
    """

    channels_last: bool = False
    token_steps: int | None = None
    fold: bool = False
    class_tokens: int = 0


_CHANNELS_FIRST = (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d,
                   nn.AdaptiveMaxPool3d)


def module_layout(module: nn.Module, layout: TimeLayout | None) -> TimeLayout | None:
    """The layout of one module's output: torch's 3-D convolutions, norms and pools give
    (b, C, T, H, W) even inside a channels-last model (Swin3D's patch embedding, its pool)."""
    if layout is not None and layout.channels_last and isinstance(module, _CHANNELS_FIRST):
        return dataclasses.replace(layout, channels_last=False)
    return layout


def split_time(x: torch.Tensor, b: int, layout: TimeLayout | None) -> tuple[torch.Tensor, bool]:
    """(x as (b, time, ...), True) for an output that keeps time, else (x, False)."""
    if layout is None:
        return x, False
    if layout.fold and x.ndim >= 2 and x.shape[0] % b == 0:  # b rows: one step (2 frames of flow)
        return x.reshape(b, x.shape[0] // b, *x.shape[1:]), True
    if x.ndim == 5 and x.shape[0] == b:
        return (x.permute(0, 1, 4, 2, 3) if layout.channels_last else x.transpose(1, 2)), True
    steps, lead = layout.token_steps, layout.class_tokens
    if (x.ndim == 3 and steps and x.shape[0] == b and x.shape[1] > lead
            and (x.shape[1] - lead) % steps == 0):
        tokens = x[:, lead:].reshape(b, steps, (x.shape[1] - lead) // steps, x.shape[2])
        if lead:
            tokens = torch.cat([x[:, None, :lead].expand(b, steps, lead, x.shape[2]), tokens], dim=2)
        return tokens, True
    return x, False


def per_step(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``fn`` (a reduction for (b, ...) outputs) applied to every time step of (b, time, ...)."""
    out = fn(x.flatten(0, 1))
    return out.reshape(x.shape[0], x.shape[1], *out.shape[1:])


def check_time_pooling(time_pooling) -> None:
    if time_pooling is not None and time_pooling not in TIME_POOLINGS:
        raise ValueError(f"The 'time_pooling' parameter must be None or one of {TIME_POOLINGS}; "
                         f"got {time_pooling!r}.")


def pool_time(x: torch.Tensor, time_pooling: str | None) -> torch.Tensor:
    """(b, time, ...) -> (b, ...) by the mean or max over time; None keeps time."""
    if time_pooling is None:
        return x
    return x.mean(dim=1) if time_pooling == "mean" else x.amax(dim=1)


def step_times(steps: int, frame_times: np.ndarray) -> np.ndarray:
    """The times of a layer's ``steps`` time steps from the input frames' times: the frame
    times when steps = frames; the midpoints of consecutive frames when steps = frames − 1
    (optic flow between frame pairs); else the centres of ``steps`` equal bins over the
    frames' span (a temporal stride: each step covers frames / steps frames)."""
    t = np.asarray(frame_times, dtype=np.float64)
    n = len(t)
    if steps == n:
        return t.copy()
    if steps == n - 1:
        return (t[:-1] + t[1:]) / 2
    dt = (t[-1] - t[0]) / (n - 1) if n > 1 else 1.0
    return t[0] - dt / 2 + (np.arange(steps) + 0.5) * n * dt / steps
