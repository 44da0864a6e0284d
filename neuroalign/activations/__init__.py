"""The activation file: one netCDF-4 file, one group per layer, read as an xarray DataTree.

Layout (schema versions 1 and 2), the contract between extraction and the analyses:

- root group: unlimited dimension ``presentation``; coordinate variables ``stimulus_id`` (str)
  and any per-stimulus coordinates (``label``, ``category``, ``image_path``, ...); provenance
  attributes (scalars and strings only), ``schema_version``, ``created`` (ISO 8601, UTC), the
  library versions, and ``layers``: the module paths of the layers, comma-joined, in file order.
- one group per layer, its path the module path with ``.`` replaced by ``/``
  (``encoder.blocks.3`` -> ``encoder/blocks/3``), with the attribute ``layer`` (the module
  path) and the variable ``activation`` whose dims follow the layer's output:
  4-D -> ``(presentation, channel, y, x)``, 3-D -> ``(presentation, token, feature)``,
  2-D -> ``(presentation, feature)``; zlib-compressed (with HDF5's byte shuffle), chunked
  by batch (see :func:`~neuroalign.activations.codec.chunk_length` for the rule). The variable's ``axes`` attribute names these canonical dims.
  A layer group may hold further variables (a projection matrix ``projection`` with dims
  ``(unit, feature)``, PCA's ``mean`` ``(unit,)``), written by the extraction options.
- a layer that keeps time (a video model on clips) has the dim ``time`` after
  ``presentation`` (``axes`` says so) and the coordinate variable ``time`` in its group, the
  times of its steps (``units`` ``s`` or ``frame``); such a file is schema 2, any other is
  still written as schema 1, and the readers take both.
- ``presentations_complete`` (root attribute) counts the stimuli fully written; the writer
  flushes the file after every batch, so an interrupted ``.partial`` file can be resumed.

Precision: netCDF-4 has no 16-bit float type, so ``dtype="float16"`` stores float32 values
rounded to float16's precision (10 mantissa bits, netCDF's BitRound quantisation: relative
error <= 2**-11, the attribute ``_QuantizeBitRoundNumberOfSignificantBits`` records it). The
zeroed bits compress away, so the file is about as small as a float16 one, every netCDF tool
reads it as plain float32, and values beyond float16's range (65504) stay finite.

One exception to the dim names: xarray requires a group's dims to match the sizes of
same-named dims in its ancestor groups. When a layer lies inside another layer (``features``
and ``features.0``) and a dim of the same name has a different size, the inner layer's dim
gets a numeric suffix in the file (``channel_1``); :func:`layer_activation` and
:func:`flatten` rename it back, and ``axes`` always holds the canonical names.

Reading needs no PyTorch: numpy, netCDF4 and xarray only.

Modules: ``schema`` (names, dims, attribute rules), ``codec`` (chunk size, BitRound, shuffle +
deflate), ``layout`` (a new file's groups and variables), ``batch`` (checks of one batch),
``resume`` (reopening a ``.partial``), ``writer`` (:class:`ActivationWriter`), ``reader``
(opening and views), ``index`` (the CSV of several files), ``shards`` (the manifest of a
sharded extraction: one tree over its shards, merging them), ``errors``.
"""

from neuroalign.activations.codec import MAX_CHUNK_BYTES, bitround
from neuroalign.activations.errors import ActivationFileError, DiskFullError
from neuroalign.activations.index import (
    INDEX_COLUMNS,
    open_activation_index,
    read_activation_index,
    write_activation_index,
)
from neuroalign.activations.reader import (
    flatten,
    layer_activation,
    layer_names,
    open_activations,
    to_rsatoolbox,
)
from neuroalign.activations.schema import (
    CANONICAL_DIMS,
    PARTIAL_SUFFIX,
    SCHEMA_VERSION,
    attr_differences,
    group_path,
    partial_path,
)
from neuroalign.activations.shards import manifest_path, merge_shards, shard_path
from neuroalign.activations.writer import ActivationWriter

__all__ = [
    "CANONICAL_DIMS",
    "INDEX_COLUMNS",
    "MAX_CHUNK_BYTES",
    "PARTIAL_SUFFIX",
    "SCHEMA_VERSION",
    "ActivationFileError",
    "ActivationWriter",
    "DiskFullError",
    "attr_differences",
    "bitround",
    "flatten",
    "group_path",
    "layer_activation",
    "layer_names",
    "manifest_path",
    "merge_shards",
    "open_activation_index",
    "open_activations",
    "partial_path",
    "read_activation_index",
    "shard_path",
    "to_rsatoolbox",
    "write_activation_index",
]
