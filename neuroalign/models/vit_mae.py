"""A Vision Transformer trained as a masked autoencoder (He et al. 2022, "Masked Autoencoders Are
Scalable Vision Learners"), readable in one file, with foveal masks.

patchify → visible tokens (argsort + gather) → encoder on the visible tokens only → decoder on
visible latents + mask tokens → pixels of every patch → loss weighted by ``batch.loss_weight``.

Which tokens are visible. The trainer hands over a pixel mask (N, 1, H, W), True = hidden (see
``neuroalign.masking``). **A token is visible iff its centre pixel is visible** — the pixel at
offset ``p // 2`` in both directions of its p × p patch (for even p the lower-right of the four
central pixels). With periphery masking the encoder therefore sees exactly the tokens whose centre
lies in the foveal disk; with patch masking on the model's patch grid the token mask equals the
pixel mask. Pixels of a visible token that are themselves hidden (the rim of the disk) reach the
encoder as the fill of ``batch.inputs``, never as the image.

Variable counts. All images of a batch keep the same number of tokens, ``k`` = the smallest
number of visible tokens of any image in the batch (at least 1). Each image keeps its ``k`` most
visible tokens: centre-visible tokens first, ordered by the fraction of their pixels that are
visible, ties by grid position. With centre fixations (FocusMIM) or random patches at a fixed
ratio every image has the same count and nothing is dropped; with fixations that differ per
image, an image with more visible tokens drops those nearest the rim of its disk (they become
mask tokens for the decoder). This keeps every tensor dense — no padding, no attention masks.

Incomplete masking. With ``visible_only=True`` (the default, MAE) hidden tokens never enter the
encoder, so a fill that carries information (``fill="blur"``) only matters inside partially
visible tokens, and the fovea filter (``masking="fovea"``, whose "hidden" region is the blurred
periphery) would become periphery masking. For those conditions build the model with
``visible_only=False``: every token of ``batch.inputs`` enters the encoder, the decoder gets no
mask tokens, and the loss is unchanged.

Design choices: no class token (features are the patch tokens; a pooled latent is their mean);
fixed 2-D sin-cos position embeddings (as MAE); patch embedding is a linear layer on patchified
pixels (equivalent to MAE's strided conv, and it lets hidden pixels be dropped before any
computation); pre-norm blocks; no sigmoid on the output (as MAE).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neuroalign.objectives import MIMBatch, weighted_mse

__all__ = [
    "Attention",
    "ViTEncoder",
    "ViTMAE",
    "check_input",
    "check_sizes",
    "gather_tokens",
    "init_weights",
    "mlp",
    "patchify",
    "sincos_position_embedding",
    "unpatchify",
    "visible_token_order",
    "vit_mae_small",
    "vit_mae_tiny",
]

# --------------------------------------------------------------------------------------------
# Patches and positions
# --------------------------------------------------------------------------------------------
def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(N, C, H, W) → (N, L, p·p·C), patches in row-major grid order, pixels (row, col, channel).

    L = (H/p)·(W/p).
    """
    n, c, h, w = images.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"Image size {h}×{w} is not divisible by the patch size {p}.")
    x = images.reshape(n, c, h // p, p, w // p, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (N, gh, gw, p, p, C)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, height: int, width: int) -> torch.Tensor:
    """(N, L, p·p·C) → (N, C, H, W); the inverse of ``patchify``."""
    n, _, d = patches.shape
    p = patch_size
    c = d // (p * p)
    x = patches.reshape(n, height // p, width // p, p, p, c)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (N, C, gh, p, gw, p)
    return x.reshape(n, c, height, width)


def sincos_position_embedding(grid_h: int, grid_w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embeddings (L, D): half the features encode the row, half the
    column, each as sin and cos at ``dim/4`` frequencies 1/10000^(i/(dim/4))."""
    if dim % 4:
        raise ValueError(f"The embedding dimension must be divisible by 4; got {dim}.")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))  # (D/4,)
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64), torch.arange(grid_w, dtype=torch.float64), indexing="ij"
    )

    def encode(pos: torch.Tensor) -> torch.Tensor:  # (L,) → (L, D/2)
        angle = pos.flatten()[:, None] * omega[None, :]
        return torch.cat([angle.sin(), angle.cos()], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).float()  # (L, D)


def visible_token_order(mask: torch.Tensor, patch_size: int) -> tuple[torch.Tensor, int]:
    """Order the tokens of each image visible-first and say how many to keep.

    Args:
        mask: (N, 1, H, W) bool pixel mask, True = hidden.
        patch_size: side p of a token's patch.

    Returns:
        ``(ids_shuffle, num_keep)``: ids_shuffle (N, L) token indices, the ``num_keep`` tokens to
        encode first (see the module docstring: centre pixel visible, then most visible pixels);
        num_keep = the smallest count of centre-visible tokens over the batch, at least 1.
    """
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"The mask must have shape (N, 1, H, W); got {tuple(mask.shape)}.")
    p = patch_size
    if mask.shape[-2] % p or mask.shape[-1] % p:
        raise ValueError(f"Mask size {tuple(mask.shape[-2:])} is not divisible by the patch size {p}.")
    hidden = mask.bool()
    centre_visible = ~hidden[:, 0, p // 2 :: p, p // 2 :: p].flatten(1)  # (N, L)
    visible_fraction = 1.0 - F.avg_pool2d(hidden.float(), p).flatten(1)  # (N, L) in [0, 1]
    score = 2.0 * centre_visible.float() + visible_fraction  # centre-visible tokens score > 2
    ids_shuffle = torch.argsort(-score, dim=1, stable=True)  # (N, L) visible first
    num_keep = max(int(centre_visible.sum(dim=1).min().item()), 1)
    return ids_shuffle, num_keep


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """x (N, L, D), ids (N, K) → (N, K, D): the tokens ``ids`` of each image."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


# --------------------------------------------------------------------------------------------
# Transformer parts
# --------------------------------------------------------------------------------------------
class Attention(nn.Module):
    """Multi-head attention; self-attention, or cross-attention when ``context`` is given."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}.")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, T, D) queries; context: (N, S, D) keys/values (x itself when None) → (N, T, D)."""
        context = x if context is None else context
        n, t, d = x.shape
        h = self.num_heads
        q = self.q(x).reshape(n, t, h, d // h).transpose(1, 2)  # (N, h, T, d/h)
        k, v = self.kv(context).reshape(n, -1, 2, h, d // h).permute(2, 0, 3, 1, 4)  # (N, h, S, d/h)
        out = F.scaled_dot_product_attention(q, k, v)  # (N, h, T, d/h)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


def mlp(dim: int, mlp_ratio: float) -> nn.Sequential:
    hidden = int(dim * mlp_ratio)
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def init_weights(module: nn.Module) -> None:
    """Xavier-uniform linear layers with zero bias, unit LayerNorms (as MAE)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class ViTEncoder(nn.Module):
    """Patch embedding + fixed position embedding + ``depth`` blocks + a final LayerNorm.

    Takes patchified pixels and their grid positions, so any subset of tokens can be encoded.
    """

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        in_channels: int,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        grid = image_size // patch_size
        self.patch_embed = nn.Linear(patch_size * patch_size * in_channels, dim)
        self.pos_embed: torch.Tensor
        self.register_buffer("pos_embed", sincos_position_embedding(grid, grid, dim), persistent=False)
        self.blocks = nn.ModuleList([Block(dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def embed(self, patches: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """patches (N, K, p·p·C), ids (N, K) grid positions (all L in order when None) → (N, K, D)."""
        x = self.patch_embed(patches)
        return x + (self.pos_embed if ids is None else self.pos_embed[ids])

    def forward(self, patches: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """patches (N, K, p·p·C), ids (N, K) → normalised tokens (N, K, D)."""
        x = self.embed(patches, ids)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class MAEDecoder(nn.Module):
    """Visible latents + mask tokens, back in grid order → ``depth`` blocks → pixels per patch."""

    def __init__(
        self,
        grid: int,
        encoder_dim: int,
        dim: int,
        depth: int,
        num_heads: int,
        patch_pixels: int,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed: torch.Tensor
        self.register_buffer("pos_embed", sincos_position_embedding(grid, grid, dim), persistent=False)
        self.blocks = nn.ModuleList([Block(dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, patch_pixels)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent (N, k, D_enc) of the kept tokens, ids_restore (N, L) → pixels (N, L, p·p·C)."""
        x = self.embed(latent)  # (N, k, D)
        n, k, d = x.shape
        mask_tokens = self.mask_token.expand(n, ids_restore.shape[1] - k, d)
        x = torch.cat([x, mask_tokens], dim=1)  # (N, L, D) in shuffled order
        x = gather_tokens(x, ids_restore) + self.pos_embed  # back to grid order
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
class ViTMAE(nn.Module):
    """A ViT masked autoencoder whose encoder sees only the visible tokens.

    Args:
        image_size: side of the square input in pixels (position embeddings are fixed to it).
        patch_size: side p of a token's patch; must divide ``image_size``.
        in_channels: image channels (3).
        dim, depth, num_heads: encoder width, number of blocks, attention heads.
        decoder_dim, decoder_depth, decoder_num_heads: the same for the decoder.
        mlp_ratio: hidden width of the MLPs relative to the width of their block.
        norm_pix_loss: predict each patch's pixels standardised by the patch's own mean and
            variance (MAE's option) instead of raw pixels.
        visible_only: encode only the visible tokens (MAE); False encodes every token of the
            input, for incomplete masking (blur fill, fovea filter).

    Input images: (N, C, image_size, image_size), in [0, 1] as the trainer makes them.
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
        norm_pix_loss: bool = False,
        visible_only: bool = True,
    ):
        super().__init__()
        check_sizes(image_size, patch_size)
        self.image_size = image_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.norm_pix_loss = norm_pix_loss
        self.visible_only = visible_only
        self.encoder = ViTEncoder(image_size, patch_size, in_channels, dim, depth, num_heads, mlp_ratio)
        self.decoder = MAEDecoder(
            image_size // patch_size, dim, decoder_dim, decoder_depth, decoder_num_heads,
            patch_size * patch_size * in_channels, mlp_ratio,
        )
        self.apply(init_weights)
        nn.init.normal_(self.decoder.mask_token, std=0.02)

    @property
    def num_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def default_layers(self) -> list[str]:
        """Module paths of the encoder blocks: the layers extracted by default."""
        return [f"encoder.blocks.{i}" for i in range(len(self.encoder.blocks))]

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, L, p·p·C), checking the size the model was built for."""
        check_input(images, self.in_channels, self.image_size, type(self).__name__)
        return patchify(images, self.patch_size)

    def forward_encoder(self, inputs: torch.Tensor, mask: torch.Tensor):
        """Encode the visible tokens only (every token when ``visible_only`` is False).

        Args:
            inputs: (N, C, H, W) the masked view (hidden pixels already filled).
            mask: (N, 1, H, W) bool, True = hidden.

        Returns:
            ``(latent, ids_keep, ids_restore)``: latent (N, k, D) the encoded visible tokens,
            ids_keep (N, k) their grid positions, ids_restore (N, L) the permutation that puts
            ``[kept tokens, the rest]`` back in grid order.
        """
        patches = self.patchify(inputs)  # (N, L, p·p·C)
        ids_shuffle, num_keep = visible_token_order(mask, self.patch_size)  # (N, L), k
        if not self.visible_only:
            num_keep = ids_shuffle.shape[1]
        ids_restore = torch.argsort(ids_shuffle, dim=1)  # (N, L)
        ids_keep = ids_shuffle[:, :num_keep]  # (N, k)
        latent = self.encoder(gather_tokens(patches, ids_keep), ids_keep)  # (N, k, D)
        return latent, ids_keep, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent (N, k, D), ids_restore (N, L) → predicted pixels of every patch (N, L, p·p·C)."""
        return self.decoder(latent, ids_restore)

    def forward_loss(self, images: torch.Tensor, prediction: torch.Tensor, loss_weight: torch.Tensor) -> torch.Tensor:
        """Σ w·(prediction − target)² / Σ w over every pixel and channel.

        Args:
            images: (N, C, H, W) the target images.
            prediction: (N, L, p·p·C) predicted patches.
            loss_weight: (N, 1, H, W) per-pixel weights (``MIMBatch.loss_weight``).
        """
        target = self.patchify(images)  # (N, L, p·p·C)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        # one weight per pixel → per pixel and channel, in the (row, col, channel) patch layout
        weight = patchify(loss_weight, self.patch_size).repeat_interleave(self.in_channels, dim=-1)
        return weighted_mse(prediction, target, weight)

    def training_loss(self, batch: MIMBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted pixel MSE of the reconstruction of every patch from the visible tokens.

        Returns:
            ``(loss, latent)``: latent (N, D) is the mean of the encoder's visible tokens — one
            value per feature, comparable across images whatever tokens each image kept, which
            is what the decorrelation logged during training should see.
        """
        latent, _, ids_restore = self.forward_encoder(batch.inputs, batch.mask)
        prediction = self.forward_decoder(latent, ids_restore)
        loss = self.forward_loss(batch.target, prediction, batch.loss_weight)
        return loss, latent.mean(dim=1)

    def reconstruct(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The predicted image (N, C, H, W) from the visible tokens of ``inputs``."""
        latent, _, ids_restore = self.forward_encoder(inputs, mask)
        return unpatchify(self.forward_decoder(latent, ids_restore), self.patch_size, *inputs.shape[-2:])

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The whole (unmasked) image through every encoder block: a list of (N, L, D), the
        outputs of ``encoder.blocks.i`` in order (before the final LayerNorm)."""
        tokens = self.encoder.embed(self.patchify(x))  # (N, L, D)
        outputs = []
        for block in self.encoder.blocks:
            tokens = block(tokens)
            outputs.append(tokens)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode the whole image (for feature extraction): (N, C, H, W) → tokens (N, L, D)."""
        return self.encoder(self.patchify(x))


def check_sizes(image_size: int, patch_size: int) -> None:
    if image_size <= 0 or patch_size <= 0 or image_size % patch_size:
        raise ValueError(
            f"image_size must be a positive multiple of patch_size; got image_size={image_size}, "
            f"patch_size={patch_size}."
        )


def check_input(images: torch.Tensor, channels: int, image_size: int, model: str) -> None:
    expected = (channels, image_size, image_size)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"{model} was built for images of shape (N, {channels}, {image_size}, {image_size}); "
            f"got {tuple(images.shape)}. Pass image_size= when creating the model."
        )


# --------------------------------------------------------------------------------------------
# Registered sizes
# --------------------------------------------------------------------------------------------
def vit_mae_tiny(**kwargs) -> ViTMAE:
    """Test size: 32 px, patch 4, dim 32, 2 blocks; decoder dim 32, 1 block (~42 k parameters)."""
    for key, value in dict(dim=32, depth=2, num_heads=2, decoder_dim=32, decoder_depth=1,
                           decoder_num_heads=2).items():
        kwargs.setdefault(key, value)
    return ViTMAE(**kwargs)


def vit_mae_small(**kwargs) -> ViTMAE:
    """CIFAR size: 32 px, patch 4 (8×8 tokens), dim 192, 6 blocks, 3 heads; decoder dim 128,
    2 blocks (~3.1 M parameters). For 96 px STL-10 pass ``image_size=96, patch_size=8`` (12×12
    tokens, FocusMIM's patch grid)."""
    return ViTMAE(**kwargs)

