"""The FocusMIM convolutional masked autoencoder (Weiler et al.), readable in one file.

Encoder: 9 residual blocks, channels 3→32,32,32→64,64,64→128,128,128, stride 2 at blocks 0, 3
and 6 (so 96 px → 48 → 24 → 12; 32 px → 16 → 8 → 4). No normalisation layers. Each block is
``relu(conv(relu(conv(x))) + shortcut(x))``; the shortcut is a strided 1×1 conv where the shape
changes and the identity elsewhere. The latent is the output of the last block (after its ReLU):
128 × 12 × 12 = 18,432 units at 96 px.
Decoder: the mirror image with transposed convolutions and a sigmoid output, so inputs and
reconstructions live in [0, 1] (unnormalised images).

The reference implementation also allocates a 1×1 "match" convolution in the blocks whose shape
does not change and never uses it; it counts ~2.08 M parameters, this one ~2.00 M with the same
function.
"""

from __future__ import annotations

import torch
from torch import nn

from neuroalign.objectives import MIMBatch, weighted_mse

__all__ = [
    "ENCODER_CHANNELS",
    "ENCODER_STRIDES",
    "ConvMAE",
    "ResidualBlock",
    "UpResidualBlock",
    "conv_mae",
    "conv_mae_tiny",
]
ENCODER_CHANNELS = (32, 32, 32, 64, 64, 64, 128, 128, 128)
ENCODER_STRIDES = (2, 1, 1, 2, 1, 1, 2, 1, 1)


class ResidualBlock(nn.Module):
    """conv3×3 (stride s) → ReLU → conv3×3, plus a shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels and stride == 1
            else nn.Conv2d(in_channels, out_channels, 1, stride=stride)
        )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        return self.relu(self.conv2(h) + self.shortcut(x))


class UpResidualBlock(nn.Module):
    """The decoder's mirror of ``ResidualBlock``: transposed convs, ×2 upsampling at stride 2."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, last: bool = False):
        super().__init__()
        extra = stride - 1  # output_padding that makes a stride-2 block exactly double H and W
        self.conv1 = nn.ConvTranspose2d(
            in_channels, out_channels, 3, stride=stride, padding=1, output_padding=extra
        )
        self.conv2 = nn.ConvTranspose2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels and stride == 1
            else nn.ConvTranspose2d(
                in_channels, out_channels, 1, stride=stride, output_padding=extra
            )
        )
        self.activation = nn.Sigmoid() if last else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        return self.activation(self.conv2(h) + self.shortcut(x))


class _Blocks(nn.Module):
    """Holds a ``blocks`` sequence: module paths ``encoder.blocks.{i}`` and ``decoder.blocks.{i}``."""

    def __init__(self, *blocks: nn.Module):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)


class ConvMAE(nn.Module):
    """FocusMIM's convolutional masked autoencoder.

    Args:
        in_channels: image channels (3).
        channels: output channels of the 9 encoder blocks.
        strides: stride of each encoder block; the decoder mirrors both.

    Input ``x``: (N, 3, H, W) in [0, 1], H and W divisible by the product of the strides (8).
    """

    def __init__(
        self,
        in_channels: int = 3,
        channels: tuple[int, ...] = ENCODER_CHANNELS,
        strides: tuple[int, ...] = ENCODER_STRIDES,
    ):
        super().__init__()
        if len(channels) != len(strides):
            raise ValueError(
                f"ConvMAE needs one stride per block: got {len(channels)} channels and "
                f"{len(strides)} strides."
            )
        self.in_channels = in_channels
        self.channels = tuple(channels)
        self.strides = tuple(strides)
        widths = (in_channels, *channels)
        self.encoder = _Blocks(
            *[ResidualBlock(widths[i], widths[i + 1], strides[i]) for i in range(len(channels))]
        )
        # Decoder block i undoes encoder block (n-1-i): same stride, channels reversed.
        n = len(channels)
        self.decoder = _Blocks(
            *[
                UpResidualBlock(widths[n - i], widths[n - 1 - i], strides[n - 1 - i], last=i == n - 1)
                for i in range(n)
            ]
        )

    @property
    def downsampling(self) -> int:
        factor = 1
        for s in self.strides:
            factor *= s
        return factor

    def default_layers(self) -> list[str]:
        """Module paths of the encoder blocks: the layers extracted by default."""
        return [f"encoder.blocks.{i}" for i in range(len(self.encoder.blocks))]

    def latent_shape(self, image_size: int) -> tuple[int, int, int]:
        side = image_size // self.downsampling
        return (self.channels[-1], side, side)

    def forward_encoder(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) → latent (N, C, H/8, W/8)."""
        if x.shape[-1] % self.downsampling or x.shape[-2] % self.downsampling:
            raise ValueError(
                f"ConvMAE input height and width must be divisible by {self.downsampling}; "
                f"got {tuple(x.shape[-2:])}."
            )
        return self.encoder.blocks(x)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every encoder block, in order: a list of (N, C_i, H_i, W_i)."""
        outputs = []
        for block in self.encoder.blocks:
            x = block(x)
            outputs.append(x)
        return outputs

    def forward_decoder(self, latent: torch.Tensor) -> torch.Tensor:
        """latent (N, C, h, w) → reconstruction (N, 3, 8h, 8w) in [0, 1]."""
        return self.decoder.blocks(latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(reconstruction, latent)``."""
        latent = self.forward_encoder(x)
        return self.forward_decoder(latent), latent

    def training_loss(self, batch: MIMBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel MSE of the reconstruction of ``batch.inputs``, weighted by ``batch.loss_weight``
        (FocusMIM: the hidden pixels). Returns ``(loss, latent)``."""
        reconstruction, latent = self(batch.inputs)
        return weighted_mse(reconstruction, batch.target, batch.loss_weight), latent


def conv_mae(**kwargs) -> ConvMAE:
    """The paper's model: ~2.0 M parameters, latent 128 × H/8 × W/8."""
    return ConvMAE(**kwargs)


def conv_mae_tiny(**kwargs) -> ConvMAE:
    """A small variant with the same code path, for tests (3 blocks of 8/8/16 channels)."""
    kwargs.setdefault("channels", (8, 8, 16))
    kwargs.setdefault("strides", (2, 1, 2))
    return ConvMAE(**kwargs)
