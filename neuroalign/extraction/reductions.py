"""Per-layer reductions, applied in this order: token choice for (b, token, feature) outputs,
spatial pooling for (b, channel, y, x) outputs, then a projection to k features (a seeded
Gaussian random projection or PCA).

A new reduction is a function here, an option of ``extract`` checked in
:func:`check_options`, and a step in :class:`neuroalign.extraction.hooks.Runner`.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TOKENS", "PROJECTIONS", "DEFAULT_PCA_FIT", "pool", "select_tokens", "check_tokens",
           "random_projection", "fit_pca", "check_options"]

TOKENS = ("all", "cls", "patches", "mean")
PROJECTIONS = ("random", "pca")
DEFAULT_PCA_FIT = 1000


def _check_pooling(pooling) -> None:
    ok = pooling is None or pooling == "avg"
    ok = ok or (isinstance(pooling, int) and not isinstance(pooling, bool) and pooling > 0)
    if not ok:
        raise ValueError(
            "The 'pooling' parameter must be None, 'avg' or a positive int k (k x k average "
            f"grid); got {pooling!r}."
        )


def pool(x: torch.Tensor, pooling) -> torch.Tensor:
    """Spatial pooling of conv outputs; other outputs pass unchanged.

    Args:
        x: (b, c, h, w) conv output, or (b, t, f) / (b, f).
        pooling: None (keep), ``"avg"`` (global average -> (b, c)) or int k (adaptive average
            to a k x k grid -> (b, c, k, k)).
    """
    if x.ndim != 4 or pooling is None:
        return x
    if pooling == "avg":
        return x.mean(dim=(2, 3))
    return F.adaptive_avg_pool2d(x, pooling)


def select_tokens(x: torch.Tensor, tokens: str, layout=None) -> torch.Tensor:
    """Token choice for transformer outputs; other outputs pass unchanged.

    Args:
        x: (b, token, feature), or any other shape (returned as is).
        tokens: ``"all"`` (keep), ``"cls"`` (the class token -> (b, feature)), ``"patches"``
            (the patch tokens, without class and register tokens -> (b, patch, feature)) or
            ``"mean"`` (the mean over the patch tokens -> (b, feature), as timm's average
            pooling).
        layout: the model's :class:`~neuroalign.models.TokenLayout`; None (unknown): the class
            token is token 0 and the mean is over every token ("patches" needs a layout).
    """
    if x.ndim != 3 or tokens == "all":
        return x
    prefix = 0 if layout is None else layout.prefix_tokens
    if tokens == "cls":
        return x[:, 0]
    if tokens == "patches":
        return x[:, prefix:]
    return x[:, prefix:].mean(dim=1)


def check_tokens(tokens: str, layout) -> None:
    """A token choice the model's layout allows (before anything runs)."""
    if tokens == "patches" and layout is None:
        raise ValueError("tokens='patches' needs the model's token layout (which tokens are "
                         "class and register tokens); pass token_layout=TokenLayout(...).")
    if tokens == "cls" and layout is not None and layout.class_tokens == 0:
        raise ValueError("tokens='cls': this model has no class token (its tokens are patches); "
                         "use 'mean' or 'patches'.")


def random_projection(n_units: int, k: int, seed: int, layer: str = "") -> np.ndarray:
    """A Gaussian random projection matrix, entries N(0, 1/k), seeded per layer.

    Johnson-Lindenstrauss scaling: for x (n_units,), ``x @ P`` has E||x P||² = ||x||².

    Args:
        n_units: input features (the flattened layer).
        k: output features.
        seed: the seed; the layer name is mixed in, so layers get different matrices.
        layer: the layer's module path.

    Returns:
        (n_units, k) float32.
    """
    state = np.random.SeedSequence([int(seed), zlib.crc32(layer.encode())]).generate_state(2)
    generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    return (torch.randn(n_units, k, generator=generator) / math.sqrt(k)).numpy()


def fit_pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA of (m, n_units) features by SVD of the centred data (float64).

    Each component's sign is fixed so its largest-magnitude loading is positive.

    Returns:
        (mean (n_units,), components (n_units, k), explained_variance (k,)), float32; the
        variance uses m - 1, as scikit-learn's PCA.
    """
    data = torch.as_tensor(x, dtype=torch.float64)
    m, d = data.shape
    if not 0 < k <= min(m - 1, d):
        raise ValueError(
            f"PCA to k = {k} components needs 0 < k <= min(fit stimuli - 1, units) = "
            f"min({m - 1}, {d})."
        )
    mean = data.mean(dim=0)
    _, s, vh = torch.linalg.svd(data - mean, full_matrices=False)
    components = vh[:k].T  # (d, k)
    biggest = components.abs().argmax(dim=0)
    signs = torch.sign(components[biggest, torch.arange(k)])
    components = components * signs
    variance = s[:k] ** 2 / (m - 1)
    return (
        mean.float().numpy(),
        components.float().numpy(),
        variance.float().numpy(),
    )



def check_options(batch_size, pooling, tokens, projection, n_components) -> None:
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"'batch_size' must be a positive int; got {batch_size!r}.")
    _check_pooling(pooling)
    if tokens not in TOKENS:
        raise ValueError(f"The 'tokens' parameter must be one of {TOKENS}; got {tokens!r}.")
    if projection is not None and projection not in PROJECTIONS:
        raise ValueError(
            f"The 'projection' parameter must be None or one of {PROJECTIONS}; got {projection!r}."
        )
    if projection is not None and not (
        isinstance(n_components, int) and not isinstance(n_components, bool) and n_components > 0
    ):
        raise ValueError(
            f"projection={projection!r} needs 'n_components', a positive int; got {n_components!r}."
        )

