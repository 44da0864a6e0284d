"""Latent masked image modeling (Wei et al. 2024, "Towards Latent Masked Image Modeling for
Self-Supervised Visual Representation Learning", github.com/yibingwei-1/LatentMIM), readable in
one file, with foveal masks.

Instead of pixels, the model predicts the *latents* of the hidden patches:

- the online encoder (a ViT, ``neuroalign.models.vit_mae.ViTEncoder``) sees only the visible
  tokens of ``batch.inputs`` — chosen exactly as in ``vit_mae`` (a token is visible iff its
  centre pixel is visible; every image keeps the batch's smallest visible count);
- the target encoder is an exponential moving average (EMA) of the online encoder, never trained
  by gradients. It sees **only the hidden patches**, taken from ``batch.target`` (the clean image
  by default), so a target cannot be read off visible context;
- a cross-attention decoder: queries are a learned mask token plus the position embedding of
  each hidden patch; each block lets the queries attend to each other, then to the visible
  latents (keys/values), then applies an MLP; a linear head maps to the encoder width;
- the loss is patch discrimination within each image: an InfoNCE over the hidden patches of one
  image, the prediction of patch i against the targets of all hidden patches j of that image,
  temperature τ = 0.2. As LatentMIM does, predictions are first standardised per feature over
  the hidden patches of their image (mean 0, std 1 across patches, which removes what all
  patches share and so the trivial "all the same" solution), then predictions and targets are
  L2-normalised; the loss is multiplied by 2τ. Each patch's term is weighted by the mean of
  ``batch.loss_weight`` over its pixels (1 under the default hidden-pixel loss; a foreground map
  re-weights patches);
- with ``visible_only=False`` (incomplete masking: blur fill, fovea filter) the online encoder
  sees every token of the degraded input and the decoder attends to all of them; the targets are
  still the hidden patches of the clean image;
- the EMA momentum follows a cosine from 0.99 to 1 over training:
  m(t) = 1 − (1 − 0.99)·(1 + cos(π t / T)) / 2, applied after each optimiser step
  (``after_optimizer_step``, called by the trainer).

Left out of LatentMIM: the MLP projection heads on both encoders, the position-weighted average
of visible latents added to the mask tokens, random patch gaps, and the class tokens.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from neuroalign.models.vit_mae import (
    Attention,
    ViTEncoder,
    check_input,
    check_sizes,
    gather_tokens,
    init_weights,
    mlp,
    patchify,
    sincos_position_embedding,
    visible_token_order,
)
from neuroalign.objectives import MIMBatch

__all__ = [
    "LatentMIM",
    "ema_update",
    "latent_mim_small",
    "latent_mim_tiny",
    "patch_infonce",
    "target_momentum",
]

# --------------------------------------------------------------------------------------------
# Loss and EMA: plain functions
# --------------------------------------------------------------------------------------------
def patch_infonce(
    prediction: torch.Tensor,
    target: torch.Tensor,
    tau: float = 0.2,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Within-image patch-discrimination InfoNCE (LatentMIM's ``infonce_patches``).

    For image n and hidden patch i: ℓ_ni = −log softmax_j(⟨p̂_ni, t̂_nj⟩ / τ)[i], where p̂ is the
    prediction standardised per feature over the M patches of its image, then L2-normalised,
    and t̂ the L2-normalised target. The loss is 2τ · Σ w_ni ℓ_ni / Σ w_ni (a plain mean when
    ``weight`` is None).

    Args:
        prediction: (N, M, D) predicted latents of the M hidden patches of each image (M ≥ 2).
        target: (N, M, D) target latents of the same patches.
        tau: temperature.
        weight: (N, M) non-negative weight of each patch's term, or None.
    """
    if prediction.shape != target.shape or prediction.ndim != 3:
        raise ValueError(
            f"prediction and target must both be (N, M, D); got {tuple(prediction.shape)} and "
            f"{tuple(target.shape)}."
        )
    if prediction.shape[1] < 2:
        raise ValueError(f"Patch discrimination needs at least 2 hidden patches per image; got {prediction.shape[1]}.")
    prediction, target = prediction.float(), target.float()
    mean = prediction.mean(dim=1, keepdim=True)  # (N, 1, D) over the patches of each image
    std = prediction.std(dim=1, keepdim=True)
    prediction = F.normalize((prediction - mean) / (std + 1e-4), dim=-1)
    target = F.normalize(target, dim=-1)
    logits = prediction @ target.transpose(1, 2) / tau  # (N, M, M): patch i vs every patch j
    per_patch = -torch.diagonal(logits.log_softmax(dim=-1), dim1=1, dim2=2)  # (N, M)
    if weight is None:
        loss = per_patch.mean()
    else:
        weight = weight.to(per_patch.dtype)
        loss = (per_patch * weight).sum() / weight.sum().clamp(min=torch.finfo(per_patch.dtype).tiny)
    return loss * 2 * tau


def target_momentum(step: int, total_steps: int, base: float = 0.99) -> float:
    """EMA momentum at ``step`` of ``total_steps``: a cosine from ``base`` (step 0) to 1 (the end)."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive; got {total_steps}.")
    progress = min(max(step / total_steps, 0.0), 1.0)
    return 1.0 - (1.0 - base) * (1.0 + math.cos(math.pi * progress)) / 2.0


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target ← momentum · target + (1 − momentum) · online, parameter by parameter."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(momentum).add_(o.detach(), alpha=1.0 - momentum)


# --------------------------------------------------------------------------------------------
# Cross-attention decoder
# --------------------------------------------------------------------------------------------
class CrossBlock(nn.Module):
    """Queries: self-attention, then cross-attention to the context, then an MLP (pre-norm)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, num_heads)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp(dim, mlp_ratio)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """queries (N, M, D), context (N, k, D) → (N, M, D)."""
        queries = queries + self.self_attn(self.norm1(queries))
        queries = queries + self.cross_attn(self.norm_q(queries), self.norm_kv(context))
        return queries + self.mlp(self.norm2(queries))


class CrossDecoder(nn.Module):
    """Predict the latents of the hidden patches from the visible latents.

    Queries = mask token + position embedding of each hidden patch; keys/values = the embedded
    visible latents + their position embeddings.
    """

    def __init__(self, grid: int, encoder_dim: int, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed: torch.Tensor
        self.register_buffer("pos_embed", sincos_position_embedding(grid, grid, dim), persistent=False)
        self.blocks = nn.ModuleList([CrossBlock(dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, encoder_dim)

    def forward(self, latent: torch.Tensor, ids_keep: torch.Tensor, ids_hidden: torch.Tensor) -> torch.Tensor:
        """latent (N, k, D_enc) at grid positions ids_keep (N, k) → predicted latents (N, M, D_enc)
        of the patches at ids_hidden (N, M)."""
        context = self.embed(latent) + self.pos_embed[ids_keep]  # (N, k, D)
        queries = self.mask_token + self.pos_embed[ids_hidden]  # (N, M, D)
        for block in self.blocks:
            queries = block(queries, context)
        return self.head(self.norm(queries))


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
class LatentMIM(nn.Module):
    """Latent MIM with a ViT encoder, an EMA target encoder and a cross-attention decoder.

    Args:
        image_size, patch_size, in_channels: input geometry (as ``ViTMAE``).
        dim, depth, num_heads: encoder width, blocks and heads (the target encoder is a copy).
        decoder_dim, decoder_depth, decoder_num_heads: the cross-attention decoder.
        mlp_ratio: hidden width of the MLPs relative to their block.
        tau: InfoNCE temperature (0.2).
        momentum: the EMA momentum at the start of training; it rises to 1 on a cosine.
        visible_only: encode only the visible tokens; False encodes every token of the input
            (incomplete masking). The targets are the hidden patches either way.
    """

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        dim: int = 192,
        depth: int = 6,
        num_heads: int = 3,
        decoder_dim: int = 128,
        decoder_depth: int = 2,
        decoder_num_heads: int = 4,
        mlp_ratio: float = 4.0,
        tau: float = 0.2,
        momentum: float = 0.99,
        visible_only: bool = True,
    ):
        super().__init__()
        check_sizes(image_size, patch_size)
        if tau <= 0:
            raise ValueError(f"tau must be positive; got {tau}.")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1]; got {momentum}.")
        self.image_size = image_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.tau = tau
        self.momentum = momentum
        self.visible_only = visible_only
        self.encoder = ViTEncoder(image_size, patch_size, in_channels, dim, depth, num_heads, mlp_ratio)
        self.decoder = CrossDecoder(image_size // patch_size, dim, decoder_dim, decoder_depth,
                                    decoder_num_heads, mlp_ratio)
        self.apply(init_weights)
        nn.init.normal_(self.decoder.mask_token, std=0.02)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)

    def default_layers(self) -> list[str]:
        """Module paths of the online encoder's blocks: the layers extracted by default."""
        return [f"encoder.blocks.{i}" for i in range(len(self.encoder.blocks))]

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        check_input(images, self.in_channels, self.image_size, type(self).__name__)
        return patchify(images, self.patch_size)

    def training_loss(self, batch: MIMBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch-discrimination InfoNCE between predicted and EMA-target latents of the hidden
        patches.

        Returns:
            ``(loss, latent)``: latent (N, D) is the mean of the online encoder's visible tokens
            (as ``ViTMAE.training_loss``).
        """
        ids_shuffle, num_keep = visible_token_order(batch.mask, self.patch_size)  # (N, L), k
        ids_keep, ids_hidden = ids_shuffle[:, :num_keep], ids_shuffle[:, num_keep:]  # (N, k), (N, M)
        if not self.visible_only:
            ids_keep = ids_shuffle  # (N, L): the whole degraded input
        if ids_hidden.shape[1] < 2:
            raise ValueError(
                f"LatentMIM needs at least 2 hidden patches per image; the mask leaves "
                f"{ids_hidden.shape[1]} of {ids_shuffle.shape[1]} (use a masking strategy other than 'none')."
            )
        latent = self.encoder(gather_tokens(self.patchify(batch.inputs), ids_keep), ids_keep)  # (N, k, D)
        with torch.no_grad():
            hidden_patches = gather_tokens(self.patchify(batch.target), ids_hidden)  # (N, M, p·p·C)
            target = self.target_encoder(hidden_patches, ids_hidden)  # (N, M, D)
        prediction = self.decoder(latent, ids_keep, ids_hidden)  # (N, M, D)
        patch_weight = F.avg_pool2d(batch.loss_weight.float(), self.patch_size).flatten(1)  # (N, L)
        weight = torch.gather(patch_weight, 1, ids_hidden)  # (N, M)
        loss = patch_infonce(prediction, target, self.tau, weight)
        return loss, latent.mean(dim=1)

    @torch.no_grad()
    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Move the target encoder towards the online encoder (momentum ``target_momentum``)."""
        ema_update(self.target_encoder, self.encoder, target_momentum(step, total_steps, self.momentum))

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The whole image through every online encoder block: a list of (N, L, D), the outputs
        of ``encoder.blocks.i`` in order (before the final LayerNorm)."""
        tokens = self.encoder.embed(self.patchify(x))  # (N, L, D)
        outputs = []
        for block in self.encoder.blocks:
            tokens = block(tokens)
            outputs.append(tokens)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode the whole image with the online encoder: (N, C, H, W) → tokens (N, L, D)."""
        return self.encoder(self.patchify(x))


def latent_mim_tiny(**kwargs) -> LatentMIM:
    """Test size: 32 px, patch 4, dim 32, 2 blocks; decoder dim 32, 1 block."""
    for key, value in dict(dim=32, depth=2, num_heads=2, decoder_dim=32, decoder_depth=1,
                           decoder_num_heads=2).items():
        kwargs.setdefault(key, value)
    return LatentMIM(**kwargs)


def latent_mim_small(**kwargs) -> LatentMIM:
    """CIFAR size: 32 px, patch 4, dim 192, 6 blocks, 3 heads; cross decoder dim 128, 2 blocks.
    For 96 px STL-10 pass ``image_size=96, patch_size=8``."""
    return LatentMIM(**kwargs)
