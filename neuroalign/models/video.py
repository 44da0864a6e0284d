"""Video models for clips: torchvision's video classifiers with their weights' preprocessing,
Hugging Face VideoMAE (never masked at extraction), optic flow (RAFT) and a flow CNN, and any
image model applied frame by frame; how each holds time in its layer outputs.

A clip reaches a model as (b, 3, T, H, W) (``clip_layout`` "CTHW", torchvision's video models)
or (b, T, 3, H, W) ("TCHW": VideoMAE, RAFT, image models frame by frame); a
:class:`ClipTransform` (or the weights' own transform) makes it from a
:class:`~neuroalign.data.clips.ClipSet` item, (T, H, W, 3) uint8 frames.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from neuroalign.extraction.time import TimeLayout

__all__ = ["CLIP_LAYOUTS", "FLOW_MODELS", "VIDEO_CLASSIFIERS", "ClipTransform", "FlowCNN",
           "OpticFlow", "clip_ready", "frame_wise", "time_layout"]

VIDEO_CLASSIFIERS = ("r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s",
                     "swin3d_t", "swin3d_s", "swin3d_b")
FLOW_MODELS = ("raft_small", "raft_large")
CLIP_LAYOUTS = ("CTHW", "TCHW")
_LAYOUT_ATTR = "neuroalign_time_layout"


def _frames_tensor(frames) -> torch.Tensor:
    """(T, H, W, 3) uint8 frames (numpy or torch) -> (T, 3, H, W) uint8 tensor."""
    x = torch.as_tensor(np.asarray(frames)) if not isinstance(frames, torch.Tensor) else frames
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"A clip must be (time, height, width, 3) frames; got {tuple(x.shape)}.")
    return x.permute(0, 3, 1, 2)


class ClipTransform:
    """A clip's frames (T, H, W, 3) uint8 -> a float tensor (3, T, size, size) ("CTHW") or
    (T, 3, size, size) ("TCHW"): every frame resized (antialiased), centre-cropped, scaled to
    [0, 1] and normalised, as :class:`~neuroalign.extraction.ImageTransform` does an image.

    Args:
        size, mean, std, resize, interpolation: as :class:`~neuroalign.models.Preprocessing`.
        layout: "CTHW" or "TCHW".
    """

    def __init__(self, size: int, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, resize: int | tuple[int, int] | None = None,
                 interpolation: str = "bilinear", layout: str = "CTHW"):
        from torchvision.transforms import InterpolationMode

        if layout not in CLIP_LAYOUTS:
            raise ValueError(f"'layout' must be one of {CLIP_LAYOUTS}; got {layout!r}.")
        self.size, self.layout = int(size), layout
        self.resize = size if resize is None else resize
        self.interpolation = InterpolationMode(interpolation)
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32)[:, None, None]
        resize_text = list(self.resize) if isinstance(self.resize, tuple) else self.resize
        self.description = f"clips {layout}: Resize({resize_text}, {interpolation}) CenterCrop({size}) ToTensor"
        if mean is not None and std is not None:
            self.description += f" Normalize(mean={list(mean)}, std={list(std)})"

    def __call__(self, frames) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        x = _frames_tensor(frames)
        resize = list(self.resize) if isinstance(self.resize, tuple) else [self.resize]
        x = F.resize(x, resize, interpolation=self.interpolation, antialias=True)
        x = F.center_crop(x, [self.size, self.size]).float().div_(255)
        if self.mean is not None and self.std is not None:
            x = x.sub_(self.mean).div_(self.std)
        return x.transpose(0, 1).contiguous() if self.layout == "CTHW" else x

    def __repr__(self) -> str:
        return f"ClipTransform({self.description})"


class _WeightsClipTransform:
    """torchvision's video weights transform (takes (T, 3, H, W) uint8, gives (3, T, h, w))
    on a clip's (T, H, W, 3) frames."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, frames) -> torch.Tensor:
        return self.transform(_frames_tensor(frames))

    def __repr__(self) -> str:
        return "clips CTHW: " + repr(self.transform).replace("\n", " ")


def time_layout(model: nn.Module) -> TimeLayout:
    """How ``model``'s outputs hold time: what :func:`frame_wise` or the loaders set, else
    from its type (Swin3D: channels last; VideoMAE: frames / tubelet steps of tokens; MViT:
    steps of tokens after a class token, repeated at each step), else 3-D convolution
    outputs (b, C, T, H, W)."""
    declared = getattr(model, _LAYOUT_ATTR, None)
    if isinstance(declared, TimeLayout):
        return declared
    if type(model).__name__ == "SwinTransformer3d":
        return TimeLayout(channels_last=True)
    if type(model).__name__ == "MViT":
        return _mvit_layout(model)
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "model_type", None) == "videomae":
        return TimeLayout(token_steps=int(config.num_frames) // int(config.tubelet_size))
    return TimeLayout()


def _mvit_layout(model: nn.Module) -> TimeLayout:
    """MViT's blocks return (class token + T'·H'·W' tokens, thw), T' its positional
    encoding's temporal size: the tokens as T' steps of H'·W' patches with the class token
    repeated at each step's start. Blocks that pool time (a temporal stride) would change
    T' within the model: then only the 3-D convolution outputs keep time."""
    pooled = [m for m in model.get_submodule("blocks").modules()
              if isinstance(m, (nn.Conv3d, nn.MaxPool3d, nn.AvgPool3d))]
    if any(_temporal_stride(m) != 1 for m in pooled):
        return TimeLayout()
    encoding: Any = model.get_submodule("pos_encoding")
    return TimeLayout(token_steps=int(encoding.temporal_size), class_tokens=1)


def _temporal_stride(module: nn.Module) -> int:
    stride: Any = module.stride
    return int(stride[0] if isinstance(stride, (tuple, list)) else stride)


def _fold_frames(module, args):
    x = args[0]
    if isinstance(x, torch.Tensor) and x.ndim == 5:  # (b, T, 3, H, W) -> (b·T, 3, H, W)
        return (x.flatten(0, 1), *args[1:])
    return args


def frame_wise(model: nn.Module) -> nn.Module:
    """``model`` (an image model) applied to every frame of a (b, T, 3, H, W) clip batch: a
    forward pre-hook folds time into the batch, and each chosen layer is extracted as
    (presentation, time, ...). Layer names stay the model's own; returns the same module."""
    if not isinstance(getattr(model, _LAYOUT_ATTR, None), TimeLayout):
        model.register_forward_pre_hook(_fold_frames, prepend=True)  # before the model's own
        setattr(model, _LAYOUT_ATTR, TimeLayout(fold=True))
    return model


class OpticFlow(nn.Module):
    """Optic flow between consecutive frames with torchvision's RAFT: (b, T, 3, H, W) in
    [-1, 1] -> (b, T − 1, 2, H, W) flow (pixels; x then y). The layer ``flow`` is the last
    flow estimate, as (presentation, time, channel=2, y, x); ``raft.*`` are RAFT's modules.

    Args:
        raft: a torchvision RAFT model.
        flow_updates: RAFT's refinement iterations (its default 12).
    """

    def __init__(self, raft: nn.Module, flow_updates: int = 12):
        super().__init__()
        self.raft, self.flow_updates = raft, int(flow_updates)
        self.flow = nn.Identity()
        setattr(self, _LAYOUT_ATTR, TimeLayout(fold=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] < 2:
            raise ValueError(f"OpticFlow needs clips (b, T >= 2, 3, H, W); got {tuple(x.shape)}.")
        b, t = x.shape[:2]
        first, second = x[:, :-1].flatten(0, 1), x[:, 1:].flatten(0, 1)
        flows = self.raft(first, second, num_flow_updates=self.flow_updates)
        return self.flow(flows[-1]).reshape(b, t - 1, *flows[-1].shape[1:])


class FlowCNN(nn.Module):
    """The "dynamic" model: RAFT's optic flow fed to a CNN whose first convolution takes the
    2 flow channels, frame pair by frame pair: layers ``flow.*`` (see :class:`OpticFlow`) and
    ``cnn.*``, each (presentation, time, ...)."""

    def __init__(self, flow: OpticFlow, cnn: nn.Module):
        super().__init__()
        self.flow, self.cnn = flow, _two_channel_input(cnn)
        setattr(self, _LAYOUT_ATTR, TimeLayout(fold=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn(self.flow(x).flatten(0, 1))


def _two_channel_input(cnn: nn.Module) -> nn.Module:
    """``cnn`` with its first Conv2d taking 2 input channels (new, seeded by the caller)."""
    for name, module in cnn.named_modules():
        if isinstance(module, nn.Conv2d):
            conv = nn.Conv2d(2, module.out_channels, module.kernel_size,  # type: ignore[arg-type]
                             module.stride, module.padding, module.dilation,  # type: ignore[arg-type]
                             module.groups, module.bias is not None)
            parent = cnn.get_submodule(name.rpartition(".")[0]) if "." in name else cnn
            setattr(parent, name.rpartition(".")[2], conv)
            return cnn
    raise ValueError(f"{type(cnn).__name__} has no Conv2d to take the flow's 2 channels.")


def adapt_torchvision(name: str, model: nn.Module, preprocessing, transform):
    """A torchvision video classifier's clip transform, RAFT wrapped in :class:`OpticFlow`;
    other models unchanged. Returns (model, preprocessing, transform)."""
    if name in VIDEO_CLASSIFIERS:
        preprocessing = dataclasses.replace(preprocessing, clip_layout="CTHW")
        own = _WeightsClipTransform(transform[0])
        return model, preprocessing, (own, repr(own))
    if name in FLOW_MODELS:
        preprocessing = dataclasses.replace(preprocessing, clip_layout="TCHW")
        return OpticFlow(model), preprocessing, preprocessing.transform()
    return model, preprocessing, transform


def flow_preprocessing(name: str):
    """RAFT's own preprocessing (torchvision's OpticalFlow: [0, 1] to [-1, 1]), at 128 px
    (RAFT takes any size divisible by 8)."""
    from neuroalign.models.specs import Preprocessing

    return Preprocessing(size=128, resize=128, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                         source=f"torchvision {name} OpticalFlow transforms()", clip_layout="TCHW")


def adapt_hf(model: nn.Module, preprocessing, transform):
    """VideoMAE: the clip transform from its image processor's parameters ("TCHW"); the model
    is called without ``bool_masked_pos``, so every patch of every frame is seen."""
    if getattr(model.config, "model_type", None) != "videomae":
        return preprocessing, transform
    preprocessing = dataclasses.replace(preprocessing, clip_layout="TCHW")
    return preprocessing, preprocessing.transform()


def clip_ready(loaded):
    """A :class:`~neuroalign.models.LoadedModel` for clips: video and flow models as they are,
    an image model applied frame by frame (:func:`frame_wise`, attribute ``frame_wise``)."""
    if loaded.preprocessing.clip_layout is not None:
        return loaded
    preprocessing = dataclasses.replace(loaded.preprocessing, clip_layout="TCHW")
    return dataclasses.replace(
        loaded, model=frame_wise(loaded.model), preprocessing=preprocessing,
        transform=preprocessing.transform(),
        attrs={**loaded.attrs, **preprocessing.attrs(), "frame_wise": 1})
