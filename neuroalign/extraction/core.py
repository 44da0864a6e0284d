"""``extract``: a model, stimuli and layer names in, one activation file out.

The data flow, each step in its own module: resolve the layer names (``layers``), turn stimuli
into batches of tensors (``sources``, ``transforms``, ``input_mask``), record the layers'
outputs with forward hooks and reduce them (``hooks``, ``reductions``), and write them batch by
batch (``pipeline``), continuing an interrupted file when asked (``resume``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from neuroalign.activations import ActivationWriter
from neuroalign.data.stimuli import StimulusSet
from neuroalign.extraction.hooks import Runner, check_output_element, split_element_keys
from neuroalign.extraction.input_mask import mask_function
from neuroalign.extraction.layers import is_default_choice, resolve_layers
from neuroalign.extraction.pipeline import fit_pca_projections, run_batches
from neuroalign.extraction.reductions import DEFAULT_PCA_FIT, check_options, check_tokens
from neuroalign.extraction.resume import check_existing, check_output, check_resumed
from neuroalign.extraction.shards import rank_device, sharding_from_env
from neuroalign.extraction.sources import Head, as_source, load_batch
from neuroalign.extraction.time import check_time_pooling
from neuroalign.interrupts import Interrupted, deferred_signals
from neuroalign.models.layout import token_layout as detect_token_layout
from neuroalign.provenance import library_versions, weights_sha256
from neuroalign.training.distributed import env_world, resolve_device

__all__ = ["extract"]


def extract(
    model: nn.Module,
    stimuli,
    layers: str | Sequence[str] | None,
    out: str | Path,
    *,
    transform: Callable | tuple[Callable, str] | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    dtype: str = "float32",
    pooling: str | int | None = None,
    tokens: str = "all",
    projection: str | None = None,
    n_components: int | None = None,
    fit_stimuli=None,
    mask=None,
    seed: int = 0,
    attrs: dict | None = None,
    compression: str | None = "zlib",
    compression_level: int = 1,
    compression_threads: int | None = None,
    overlap: bool | None = None,
    output_element: dict[str, int | str] | None = None,
    token_layout=None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    time_pooling: str | None = None,
    time_layout=None,
) -> Path:
    """Run ``model`` over ``stimuli`` and write the chosen layers' activations to ``out``.

    The model runs in eval mode under ``torch.inference_mode`` (its training flag is restored
    afterwards). SIGINT (Ctrl-C) or SIGTERM (in the main thread) ends the run after the batch
    being written: the ``<out>.partial`` keeps every complete batch, and
    :class:`~neuroalign.interrupts.Interrupted` is raised (``resume=True`` continues). Before
    a file of more than 1 GB (uncompressed), one line with ``progress`` says its size. After the first batch each forward pass ends once the last chosen
    layer has run (an autoencoder's decoder or a classifier head after it is skipped), unless
    a chosen module runs several times in one pass. A module that runs several times in one forward pass (a shared ReLU) keeps its
    last output, with a warning. The file is written to ``<out>.partial`` and renamed
    when complete (see :class:`neuroalign.activations.ActivationWriter`). Loading, the forward
    pass and compression/writing overlap in three threads on an accelerator (``overlap``); at
    most two batches of activations are held at once.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) each process extracts its contiguous share of the
    stimuli (whole batches, as equal as possible; see
    :func:`~neuroalign.activations.shards.batch_shares`) into its own shard file next to
    ``out`` (``acts.shard-00-of-02.nc`` for ``acts.nc``), resumable on its own; rank 0 writes
    the manifest ``acts.manifest.json`` naming the shards, their ranges and the settings, and
    every process returns its path once all shards are finished (open it with
    :func:`~neuroalign.activations.open_activations`, or merge it with
    :func:`~neuroalign.activations.shards.merge_shards`). The processes join a gloo process
    group for barriers only. Each stimulus's values are those of a single-process run.

    Args:
        model: any ``nn.Module`` taking a (b, 3, H, W) float tensor.
        stimuli: a :class:`StimulusSet` (images, ids and per-stimulus coords, written as
            presentation coords; a folder-based set also gets ``image_path``), a
            :class:`DatasetStimuli`, or a torch ``Dataset`` yielding images or
            (image, label) pairs (wrapped in a DatasetStimuli with ids ``<class>/<index>``).
        layers: module paths, glob patterns, "blocks", "all" or None (see :func:`resolve_layers`).
        out: the activation file (``.nc``); under torchrun, the name the shards and the
            manifest are named after.
        transform: image -> tensor (3, H, W), or the (transform, description) pair from
            :func:`image_transform`; the description (or the transform's repr) is stored.
            None only for datasets that yield tensors already.
        batch_size: stimuli per forward pass and per write.
        device: where the model runs; None keeps the model's device. A given device moves the
            model there; ``"auto"``: the GPU if there is one, else the CPU. Under torchrun
            ``"auto"`` and ``"cuda"`` are this process's GPU, ``cuda:LOCAL_RANK``.
        dtype: ``"float32"`` or ``"float16"`` storage.
        pooling: None, ``"avg"`` or int k (see :func:`pool`); applies to 4-D outputs only.
        tokens: ``"all"``, ``"cls"``, ``"patches"`` or ``"mean"`` (see :func:`select_tokens`,
            and ``token_layout``); applies to
            3-D (b, token, feature) outputs only.
        projection: None, ``"random"`` (Gaussian, entries N(0, 1/k), seeded by ``seed`` and
            the layer name) or ``"pca"``: each layer's flattened output (after tokens and
            pooling) goes to ``n_components`` features; the layer's group stores the matrix
            ``projection`` (unit, feature) — and for PCA ``mean`` (unit,) and
            ``explained_variance`` (feature,) — so that ``activation = (x - mean) @ projection``.
        n_components: k, the features per layer after the projection.
        fit_stimuli: what PCA is fitted on, in a first pass before extraction: an int m (the
            first m stimuli), another stimulus set or dataset, or None (the first
            min(n, 1000) stimuli). The fit set's features are held in memory
            (m x units floats per layer).
        mask: hide part of every input before the forward pass: None; a callable
            (b, 3, H, W) tensor -> same; a strategy name of :mod:`neuroalign.masking`; or a
            mapping with ``strategy``, ``ratio`` (default 0.8 periphery, 0.2 centre, 0.6
            patches), ``fill`` (default ``"mean"``) and ``patch_size`` (8). Random masks use
            one generator per stimulus seeded from (``seed``, stimulus index), so they do not
            depend on the batch size. Recorded in the attrs ``input_mask*``.
        seed: seed of the random projection and of random masks.
        attrs: provenance stored in the file (``model``, ``checkpoint_sha256``, ``recipe``,
            ``masking``, ``seed``, ``normalisation``, ...): strings or numbers.
        compression: ``"zlib"`` (HDF5's shuffle and deflate, readable by every netCDF tool)
            or None.
        compression_level: deflate level 0-9 (0: off; 1, the default, is the fastest).
        compression_threads: threads deflating chunks; None: one per CPU core (at most 8).
        output_element: for modules returning a tuple, list or mapping (an attention block,
            an LSTM, a Hugging Face ``ModelOutput``): layer -> the index or key of the element
            to keep; also written in ``layers`` as ``"LAYER:KEY"`` (``"encoder.layer.3:0"``).
            Default: element 0 of a tuple or list, the first entry of a mapping (a
            ModelOutput's main output), with a warning naming the layers. The kept element is
            the layer group's ``output_element`` attribute.
        token_layout: which tokens of (b, token, feature) outputs are class, register and
            patch tokens (:class:`~neuroalign.models.TokenLayout`), for ``tokens``; None:
            read from the model (timm, torchvision, Hugging Face, OpenCLIP and neuroalign
            ViTs; see :func:`~neuroalign.models.token_layout`). Stored as the attributes
            ``class_tokens``, ``register_tokens``, ``patch_size``.
        overlap: load, run and write successive batches at the same time in three threads;
            None: when the model runs on an accelerator. On a CPU device the forward pass
            already keeps every core busy, and threads competing with it slow it down more
            than the work they do (measured in benchmarks/bench_extraction.py), so the steps
            run in turn there, each using all cores.
        resume: continue an interrupted ``<out>.partial`` after its last complete batch:
            its stimulus ids must be the first ones of ``stimuli``, and its layers, its
            attributes (except ``device`` and ``torch_version``: dtype, compression, pooling,
            tokens, projection, transform, mask, ...) and its weights (``weights_sha256``)
            those of this call, else a ValueError naming what differs; a stored projection is
            reused. A finished ``out`` is checked alike and returned as it is. Without either
            file, starts afresh.
        overwrite: replace an existing ``out`` or discard an interrupted ``<out>.partial``.
            Without ``resume`` or ``overwrite`` either of them is a FileExistsError.
        progress: show a tqdm progress bar.
        time_pooling: for clips (:class:`~neuroalign.data.clips.ClipSet`, batches
            (b, 3, T, H, W) or (b, T, 3, H, W)): a layer that keeps time is written as
            (presentation, time, ...) with the frame times as its ``time`` coordinate (None),
            or averaged (``"mean"``) or maximised (``"max"``) over time. Spatial pooling,
            tokens and projections apply to every time step alike.
        time_layout: how the model's outputs hold time
            (:class:`~neuroalign.extraction.time.TimeLayout`); None: read from the model
            (:func:`neuroalign.models.video.time_layout`).

    Returns:
        The path of the finished file (under torchrun: of the manifest).
    """
    source = as_source(stimuli)
    if len(source) == 0:
        raise ValueError("The stimulus set is empty.")
    check_options(batch_size, pooling, tokens, projection, n_components)
    check_time_pooling(time_pooling)
    transform, description = _split_transform(transform)
    mask_fn, mask_attrs = mask_function(mask, seed)
    layers, keyed = split_element_keys(layers)
    names, lenient = resolve_layers(model, layers), is_default_choice(model, layers)
    output_element = check_output_element(output_element, names)
    for choice, key in keyed:
        output_element.update(dict.fromkeys(resolve_layers(model, choice), key))
    token_layout = token_layout if token_layout is not None else detect_token_layout(model)
    check_tokens(tokens, token_layout)
    sharding = sharding_from_env(out, len(source), batch_size)
    if sharding is not None:
        device = rank_device(device)
    elif device == "auto":
        device = resolve_device("auto")
    device = _place_model(model, device)
    overlap = device.type != "cpu" if overlap is None else overlap
    lo, hi = (0, len(source)) if sharding is None else sharding.span
    if sharding is None:
        out = check_output(Path(out), resume, overwrite)
    else:  # every rank checks before any of them writes
        sharding.join()
        sharding.check_output(resume, overwrite)
        out = sharding.file if sharding.empty else check_output(sharding.file, resume, overwrite)
        sharding.barrier()
        if sharding.empty:  # more processes than batches: nothing to extract here
            return sharding.finish()
    file_attrs = {
        **_file_attrs(model, source, description, device, dtype, compression, compression_level),
        **_reduction_attrs(pooling, tokens, projection, n_components, seed),
        **_element_attrs(output_element), **mask_attrs,
        **(token_layout.attrs() if token_layout is not None else {}), **(attrs or {}),
        "weights_sha256": weights_sha256(model),
        **(sharding.attrs() if sharding is not None else {}),
    }
    fit_set = _pca_fit_set(source, fit_stimuli, file_attrs) if projection == "pca" else None
    first = load_batch(source, np.arange(lo, min(lo + batch_size, hi)), transform, mask_fn)
    _input_attrs(file_attrs, first[0])
    time_layout, frame_times = _clip_settings(model, source, first[0], time_layout, time_pooling,
                                              file_attrs)
    if sharding is not None:
        sharding.start(source.stimulus_id, file_attrs, resume)  # rank 0: the manifest
    if resume and check_existing(out, source.stimulus_id[lo:hi], file_attrs, names, lenient):
        return out if sharding is None else sharding.finish()  # finished, with these settings

    was_training = model.training
    runner = Runner(model, names, lenient, pooling, tokens, device, 2 if overlap else 1,
                    output_element, token_layout, time_layout, time_pooling)
    runner.frame_times = frame_times
    desc = "extract" if sharding is None else f"extract {sharding.rank + 1}/{sharding.count}"
    bar = tqdm(total=hi - lo, unit="img", desc=desc, disable=not progress,
               position=None if sharding is None else env_world()[2])
    try:
        model.eval()
        with deferred_signals() as stop, ActivationWriter(
            out, attrs=file_attrs, dtype=dtype, compression=compression,
            compression_level=compression_level, compression_threads=compression_threads,
            resume=resume, time_units=file_attrs.get("time_units", "s"),
        ) as writer:
            if writer.resumed:
                _continue_file(writer, runner, source.stimulus_id[lo:hi], projection, bar)
            if projection == "pca" and not runner.projections:
                _fit_pca(writer, runner, fit_set, transform, mask_fn, batch_size, n_components)
            if not run_batches(runner, writer, source, lo + writer.n_written, batch_size,
                               transform, mask_fn, first, projection, n_components, seed, bar,
                               overlap, stop, begin=lo, end=hi):  # a signal: .partial kept
                raise Interrupted(
                    stop.signum or 0, writer.partial_path,
                    f"{writer.n_written} of {hi - lo} stimuli in {writer.partial_path}",
                    "extract(..., resume=True) with the same arguments continues it")
    finally:
        bar.close()
        runner.close()
        model.train(was_training)
    return out if sharding is None else sharding.finish()


def _split_transform(transform) -> tuple[Callable | None, str]:
    """(transform, description) from a transform or the pair :func:`image_transform` gives."""
    if isinstance(transform, tuple):
        transform, description = transform
    else:
        description = "none" if transform is None else repr(transform)
    if transform is not None and not callable(transform):
        raise TypeError(f"'transform' must be callable; got {type(transform).__name__}.")
    return transform, description


def _place_model(model: nn.Module, device) -> torch.device:
    """Move the model to ``device``; None keeps (and returns) the model's own device."""
    if device is not None:
        model.to(device)
    else:
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
    return torch.device(device)


def _file_attrs(model, source, description, device, dtype, compression, level) -> dict:
    """The root attributes saying what was extracted and how it is stored."""
    return {
        "model": type(model).__name__,
        "stimulus_set": source.name,
        "transform": description,
        "dtype": dtype,
        "compression": f"{compression} level={level}" if compression and level else "none",
        **library_versions("torch"),
        "device": str(device),
    }


def _reduction_attrs(pooling, tokens, projection, n_components, seed) -> dict:
    attrs = {
        "pooling": "none" if pooling is None else str(pooling),
        "tokens": tokens,
        "projection": projection or "none",
    }
    if projection is not None:
        attrs["n_components"] = n_components
        if projection == "random":
            attrs["projection_seed"] = int(seed)
    return attrs


def _element_attrs(output_element: dict) -> dict:
    if not output_element:
        return {}
    return {"output_element": ", ".join(f"{k}={v}" for k, v in sorted(output_element.items()))}


def _pca_fit_set(source, fit_stimuli, file_attrs: dict):
    """The stimuli PCA is fitted on (see ``fit_stimuli``); records them in ``file_attrs``."""
    if fit_stimuli is None or isinstance(fit_stimuli, int):
        m = min(len(source), DEFAULT_PCA_FIT if fit_stimuli is None else fit_stimuli)
        if m <= 0:
            raise ValueError(f"'fit_stimuli' must be a positive int; got {fit_stimuli!r}.")
        file_attrs["pca_fit"] = f"first {m} stimuli of {source.name or 'the set'}"
        return source.subset(slice(0, m)) if isinstance(source, StimulusSet) else Head(source, m)
    fit_source = as_source(fit_stimuli)
    file_attrs["pca_fit"] = f"{len(fit_source)} stimuli of {fit_source.name or 'a fit set'}"
    return fit_source


def _input_attrs(file_attrs: dict, x: torch.Tensor) -> None:
    """The model input's shape (and square size), from the first batch."""
    file_attrs.setdefault("input_shape", "x".join(map(str, x.shape[1:])))
    if x.shape[-1] == x.shape[-2]:
        file_attrs.setdefault("input_size", int(x.shape[-1]))


def _continue_file(writer, runner, ids, projection, bar) -> None:
    """Check a resumed file against this run (``ids``: the stimuli it is to hold); take over
    its layers and stored projections."""
    check_resumed(writer, ids)
    runner.lenient = False
    if writer.layer_shapes:
        runner.names = list(writer.layer_shapes)
    bar.update(writer.n_written)
    for layer in writer.layer_shapes if projection else ():
        matrix = writer.stored_layer_data(layer, "projection")
        if matrix is not None:  # None: stored unprojected (units <= k)
            runner.set_projection(layer, matrix, writer.stored_layer_data(layer, "mean"))


def _fit_pca(writer, runner, fit_set, transform, mask_fn, batch_size, k) -> None:
    """A first pass over the fit stimuli; each layer's PCA goes to the runner and the file."""
    fitted = fit_pca_projections(runner, fit_set, transform, mask_fn, batch_size, k)
    for layer, (components, mean, variance) in fitted.items():
        runner.set_projection(layer, components, mean)
        writer.layer_data[layer] = {
            "projection": (("unit", "feature"), components),
            "mean": (("unit",), mean),
            "explained_variance": (("feature",), variance),
        }


def _clip_settings(model, source, x: torch.Tensor, time_layout, time_pooling, file_attrs: dict):
    """For clip batches (5-D): the model's time layout, the input frames' times, and the
    attributes saying how time was handled; (None, None) for images."""
    if x.ndim != 5:
        if time_pooling is not None:
            raise ValueError(f"time_pooling={time_pooling!r} needs clips as stimuli; these "
                             f"batches are {tuple(x.shape)}.")
        return None, None
    from neuroalign.models.video import time_layout as detect_time_layout

    layout = time_layout if time_layout is not None else detect_time_layout(model)
    n_frames = getattr(source, "frames", None) or int(
        x.shape[2] if x.shape[1] == 3 and x.shape[2] != 3 else x.shape[1])
    frame_times = getattr(source, "frame_times", None)
    units = "s"
    if frame_times is None or len(frame_times) != n_frames:
        frame_times, units = np.arange(n_frames, dtype=np.float64), "frame"
    file_attrs.update({"time_pooling": time_pooling or "none", "time_units": units,
                       "frames": n_frames})
    if getattr(source, "sampling", None):
        file_attrs["clip_sampling"] = str(source.sampling)
    return layout, np.asarray(frame_times, dtype=np.float64)
