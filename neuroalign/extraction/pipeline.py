"""The batch loop: load batch i+1 | forward batch i | write batch i-1, overlapped in threads
(on an accelerator) or in turn, with the memory of each written batch handed back to the OS."""

from __future__ import annotations

import math
import warnings
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from neuroalign._memory import release_freed_memory
from neuroalign.activations import ActivationWriter
from neuroalign.extraction.reductions import fit_pca, random_projection
from neuroalign.extraction.sources import load_batch
from neuroalign.extraction.time import step_times

__all__ = ["LARGE_FILE_BYTES", "batch_indices", "fit_pca_projections", "run_batches", "size_notice"]

#: Above this estimated size (bytes, uncompressed) an extraction says how large its file will be.
LARGE_FILE_BYTES = 10**9


def batch_indices(start: int, stop: int, batch_size: int) -> list[np.ndarray]:
    return [np.arange(s, min(s + batch_size, stop)) for s in range(start, stop, batch_size)]


def fit_pca_projections(runner, fit_source, transform, mask_fn, batch_size: int, k: int):
    """First pass over the fit stimuli: layer -> (components, mean, explained variance)."""
    collected: dict[str, list[np.ndarray]] = {}
    for index in batch_indices(0, len(fit_source), batch_size):
        x, _ = load_batch(fit_source, index, transform, mask_fn)
        for name, values in runner.features(x).items():
            rows = values.flatten(0, 1) if name in runner.timed else values  # time steps: rows
            collected.setdefault(name, []).append(  # a copy: the buffers are reused
                rows.reshape(len(rows), -1).to("cpu", torch.float32).numpy().copy()
            )
    fitted = {}
    for name, parts in collected.items():
        if parts[0].shape[1] <= k:
            continue  # stored as it is (see _layer_options)
        try:
            mean, components, variance = fit_pca(np.concatenate(parts), k)
        except ValueError as err:
            raise ValueError(f"Layer {name!r}: {err}") from err
        fitted[name] = (components, mean, variance)
    return fitted



def _warn_unprojected(name: str, units: int, k: int) -> None:
    warnings.warn(
        f"Layer {name!r} has {units} units, not more than n_components={k}: it is stored "
        "without projection (its group's 'projection' attribute says 'none').",
        RuntimeWarning,
        stacklevel=4,
    )


def _layer_options(features, runner, writer, projection, k, seed) -> None:
    """On the first batch of a new file: random projections and per-layer provenance."""
    for name, values in features.items():
        timed = name in runner.timed  # projected step by step
        shape = tuple(values.shape[2 if timed else 1:])
        axes = {3: "channel y x", 2: "token feature", 1: "feature"}[len(shape)]
        if timed:
            writer.layer_time[name] = step_times(values.shape[1], runner.frame_times)
        layer_attrs = {}
        if projection is not None:
            units = math.prod(shape)
            layer_attrs = {
                "projection": projection,
                "source_shape": "x".join(map(str, shape)),
                "source_axes": axes,
            }
            if units <= k:
                _warn_unprojected(name, units, k)
                layer_attrs["projection"] = "none"
            elif projection == "random" and name not in runner.projections:
                matrix = random_projection(units, k, seed, name)
                runner.set_projection(name, matrix, None)
                writer.layer_data[name] = {"projection": (("unit", "feature"), matrix)}
        if name in runner.recorder.elements:  # the module returned a tuple, list or dict
            layer_attrs["output_element"] = runner.recorder.elements[name]
        if layer_attrs:
            writer.layer_attrs[name] = layer_attrs


def size_notice(arrays: dict[str, np.ndarray], n_stimuli: int, dtype: str,
                threshold: float | None = None) -> str | None:
    """One line estimating the file's size from a batch's arrays when above ``threshold``
    (default :data:`LARGE_FILE_BYTES`), with the options that make it smaller; else None.

    Values are stored as 4-byte floats whatever ``dtype`` (float16 is float32 rounded to
    float16's precision, which compression halves), so the estimate is stimuli x units x 4.
    """
    threshold = LARGE_FILE_BYTES if threshold is None else threshold
    units = sum(math.prod(a.shape[1:]) for a in arrays.values())
    size = n_stimuli * units * 4
    if size <= threshold:
        return None
    rounded = dtype == "float16"
    return (f"extract: the activation file will hold about {_human(size)} uncompressed "
            f"({n_stimuli} stimuli x {units} values x 4 bytes, {len(arrays)} layers"
            f"{'; float16-rounded values compress to about half' if rounded else ''}); "
            f"pooling (--pooling avg or k), a projection (--projection random|pca "
            f"--n-components K){'' if rounded else ' or --dtype float16'} make it smaller")


def _human(size: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _write(writer: ActivationWriter, holder: list, ids, coords) -> None:
    """Write the batch in ``holder`` (its only reference), so the writer can free each layer
    as soon as it is on disk."""
    writer.write_batch(holder.pop(), ids, coords)
    _release_freed_memory()


#: Free bytes glibc's arenas may hold before they are handed back to the OS.
TRIM_ABOVE_BYTES = 256 * 2**20


def _release_freed_memory() -> None:
    """Hand memory freed by the written batches back to the OS once glibc's arenas hold more
    than ``TRIM_ABOVE_BYTES`` free (it keeps freed blocks otherwise, and the process's resident
    size creeps up batch after batch). Not after every batch: the next forward pass would then
    fault in anew the pages it is about to reuse (+10-15 % time on resnet18 at 64 px)."""
    release_freed_memory(TRIM_ABOVE_BYTES)


class _InlineExecutor:
    """An executor that runs each task at once, in the calling thread."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as err:  # re-raised by result(), as from a thread
            future.set_exception(err)
        return future


def _executor(overlap: bool, name: str):
    return ThreadPoolExecutor(1, thread_name_prefix=name) if overlap else _InlineExecutor()


def run_batches(runner, writer, source, start, batch_size, transform, mask_fn, first,
                projection, k, seed, bar, overlap, stop=None, *, begin: int = 0,
                end: int | None = None) -> bool:
    """The batch loop: load i+1 | forward i | write i-1, overlapped in threads or in turn.

    Stimuli ``start`` .. ``end`` (default: the last) of the stimuli ``begin`` .. ``end`` that
    the file holds (a shard's share; ``first`` is the batch at ``begin``). ``stop``: true once
    the loop should end (a signal came): the batches begun are written, and the result is
    False. True when every batch is written.
    """
    end = len(source) if end is None else end
    todo = batch_indices(start, end, batch_size)
    if not todo:
        return True
    with _executor(overlap, "neuroalign-load") as loader, _executor(
        overlap, "neuroalign-write"
    ) as write_pool:
        if start == begin:
            future = loader.submit(lambda: first)
        else:
            future = loader.submit(load_batch, source, todo[0], transform, mask_fn)
        pending: Future | None = None  # the write of the batch before
        pending_size, complete = 0, True
        try:
            for i, index in enumerate(todo):
                if stop and i > 0:  # at least one batch on disk: the file can be resumed
                    complete = False
                    break
                x, coords = future.result()
                if i + 1 < len(todo):
                    future = loader.submit(load_batch, source, todo[i + 1], transform, mask_fn)
                features = runner.features(x)
                del x
                new_file = writer.n_written == 0 and pending is None
                if new_file:
                    _layer_options(features, runner, writer, projection, k, seed)
                arrays = runner.arrays(features)
                del features
                notice = size_notice(arrays, end - begin, writer.dtype) if new_file else None
                if notice and not bar.disable:
                    bar.write(notice, file=bar.fp)  # the progress channel (stderr)
                if pending is not None:
                    pending.result()  # at most one batch waits for the writer
                    bar.update(pending_size)
                pending = write_pool.submit(_write, writer, [arrays], source.stimulus_id[index],
                                            coords)
                pending_size = len(index)
                del arrays
            assert pending is not None  # todo is not empty
            pending.result()
            bar.update(pending_size)
            return complete
        except BaseException:
            future.cancel()
            if pending is not None:
                try:  # the batch before is good: let its write finish before the file closes
                    pending.result()
                except BaseException:
                    pass
            raise
