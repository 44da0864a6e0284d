"""Extract layer activations of any torch model into an activation file (neuroalign.activations).

Forward hooks capture the outputs of the chosen modules during a full forward pass. Three
steps overlap: a loader thread prepares batch i+1 while the model runs on batch i, and a writer
thread stores batch i-1 meanwhile, its chunks deflated in parallel without the GIL (see
:class:`neuroalign.activations.ActivationWriter`). At most two batches of activations are
alive at once, whatever the number of stimuli, and memory freed after each batch is handed
back to the operating system.

Per-layer options, applied in this order: token choice for (b, token, feature) outputs,
spatial pooling for (b, channel, y, x) outputs, then a projection to k features (a seeded
Gaussian random projection or PCA), whose matrix is stored in the layer's group.

Modules: ``layers`` (names and globs), ``transforms`` (image preprocessing), ``sources``
(stimulus sources, batch loading), ``input_mask`` (masking inputs), ``hooks`` (recording and
checking layer outputs), ``reductions`` (tokens, pooling, projections), ``pipeline`` (the batch
loop), ``resume`` (checks before continuing a file), ``core`` (``extract``), ``checkpoints``
(several checkpoints, one file each), ``shards`` (under torchrun: each process's share, the
manifest).
"""

from neuroalign.extraction.checkpoints import extract_checkpoints
from neuroalign.extraction.core import extract
from neuroalign.extraction.layers import (
    BLOCKS,
    UnknownLayerError,
    block_groups,
    every_block,
    layer_shapes,
    list_layers,
    match_layers,
    resolve_layers,
)
from neuroalign.extraction.reductions import (
    DEFAULT_PCA_FIT,
    PROJECTIONS,
    TOKENS,
    fit_pca,
    pool,
    random_projection,
    select_tokens,
)
from neuroalign.extraction.sources import DatasetStimuli
from neuroalign.extraction.transforms import ImageTransform, image_transform

__all__ = [
    "extract",
    "extract_checkpoints",
    "list_layers",
    "layer_shapes",
    "block_groups",
    "every_block",
    "BLOCKS",
    "UnknownLayerError",
    "match_layers",
    "resolve_layers",
    "ImageTransform",
    "image_transform",
    "DatasetStimuli",
    "pool",
    "select_tokens",
    "random_projection",
    "fit_pca",
    "TOKENS",
    "PROJECTIONS",
    "DEFAULT_PCA_FIT",
]
