"""File-level stages: activation files and brain data in, results datasets out.

These are what the CLI sub-commands and ``neuroalign demo`` call; the metrics themselves are
plain array functions in :mod:`neuroalign.analysis`, and brain data by name come from
:mod:`neuroalign.data.registry`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from neuroalign.activations import flatten, layer_names, open_activations
from neuroalign.data.registry import brain_description, load_brain_rdms
from neuroalign.variable_attrs import add_variable_attrs

__all__ = [
    "banded_encoding_from_file",
    "decorrelation_from_file",
    "encoding_from_file",
    "format_table",
    "iter_layer_blocks",
    "iter_layer_chunks",
    "iter_layers",
    "layer_rdms_from_file",
    "model_description",
    "model_similarity_from_files",
    "partition_from_files",
    "probe_from_files",
    "rsa_from_file",
    "save_results",
    "select_stimuli",
    "stimulus_coords",
    "ONE_RDM",
]


def _chosen_layers(tree, path, layers: str | Sequence[str] | None) -> list[str]:
    """The layers asked for (one name, a list, or None: every layer of the file); an empty
    choice is an error, not a silent 'all' or 'none'. ``tree``: the open file, or a list of
    its layer names."""
    names = tree if isinstance(tree, list) else layer_names(tree)
    if layers is None:
        return names
    chosen = [layers] if isinstance(layers, str) else list(layers)
    if not chosen or not all(str(name).strip() for name in chosen):
        raise ValueError(
            f"{path}: the layers chosen ({layers!r}) select no layer; give layer names "
            f"(the file holds {names[:10]}) or None for all of them."
        )
    return chosen


def iter_layers(path: str | Path, layers: str | Sequence[str] | None = None,
                ) -> Iterator[tuple[str, np.ndarray]]:
    """(layer, activations (n_stimuli, n_units) float64) for each layer, one in memory at a time."""
    tree = open_activations(path, chunks=None)
    try:
        for layer in _chosen_layers(tree, path, layers):
            yield layer, np.asarray(flatten(tree, layer).values, dtype=np.float64)
    finally:
        tree.close()


def iter_layer_chunks(path: str | Path, layers: Sequence[str] | None = None, chunk_size: int = 4096):
    """(layer, iterator of (n_stimuli, ≤ chunk_size) feature chunks) for each layer: memory stays
    bounded by one chunk whatever the layer's size."""
    from neuroalign.analysis.streaming import layer_chunks

    tree = open_activations(path, chunks=None)
    try:
        names = _chosen_layers(tree, path, layers)
    finally:
        tree.close()
    for layer in names:
        yield layer, layer_chunks(path, layer, chunk_size)


def iter_layer_blocks(path: str | Path, layers: Sequence[str] | None = None,
                      max_bytes: int | None = None):
    """(layer, `analysis.streaming.StimulusBlocks`) for each layer: read in groups of whole
    stimuli, the file's chunk order, so each disk chunk is decompressed once when the layer
    fits ``max_bytes`` (default ``streaming.LAYER_READ_BYTES``), a bounded number of times
    otherwise."""
    from neuroalign.analysis.streaming import LAYER_READ_BYTES, file_layers, layer_blocks

    names = _chosen_layers(file_layers(path), path, layers)
    for layer in names:
        yield layer, layer_blocks(path, layer, max_bytes or LAYER_READ_BYTES)


def stimulus_coords(path: str | Path) -> xr.Dataset:
    """The presentation coordinates (``stimulus_id``, ``label`` …) of an activation file."""
    tree = open_activations(path, chunks=None)
    try:
        return tree.to_dataset(inherit=False).coords.to_dataset().load()
    finally:
        tree.close()


def _root_attrs(path) -> dict:
    tree = open_activations(path, chunks=None)
    try:
        return dict(tree.attrs)
    finally:
        tree.close()


def model_description(path: str | Path, attrs: dict | None = None) -> str:
    """The model an activation file was extracted from, in words, from its attributes (read
    from ``path`` unless given): "conv_mae, checkpoint pretrain/checkpoint.pt (step 400)"."""
    attrs = _root_attrs(path) if attrs is None else attrs
    words = str(attrs.get("model") or Path(path).stem)
    if attrs.get("checkpoint"):
        checkpoint = Path(str(attrs["checkpoint"]))
        words += f", checkpoint {checkpoint.parent.name}/{checkpoint.name}"
        if "training_steps" in attrs:
            words += f" (step {int(attrs['training_steps'])})"
    elif attrs.get("weights"):
        words += f", {attrs['weights']}"
    return words


def _source_attrs(path) -> dict:
    """What a results dataset records about the activation file it came from."""
    attrs = _root_attrs(path)
    stimulus_set = str(attrs.get("stimulus_set", "") or "")
    return {"activations": str(path), "model_description": model_description(path, attrs),
            "stimulus_set": stimulus_set or "unnamed stimuli"}


def select_stimuli(data, **conditions):
    """The presentations of ``data`` (a DataArray or Dataset with a ``presentation`` dim, e.g.
    from ``layer_activation``) whose coordinates equal the given values: a value or a list of
    values each, e.g. ``select_stimuli(da, face=True)``,
    ``select_stimuli(da, category=["human face", "nonhuman face"])``.

    A condition no stimulus meets is an error naming the values the coordinate has, rather
    than the empty (all-NaN after a mean) selection a plain ``.sel`` gives.
    """
    keep = np.ones(data.sizes["presentation"], dtype=bool)
    for name, wanted in conditions.items():
        if name not in data.coords or data[name].dims != ("presentation",):
            have = [str(k) for k, v in data.coords.items() if v.dims == ("presentation",)]
            raise ValueError(f"no presentation coordinate {name!r}; there are {have}")
        values = data[name].values
        wanted = list(wanted) if isinstance(wanted, (list, tuple, set)) else [wanted]
        match = np.isin(values, wanted)
        if not match.any():
            raise ValueError(f"no stimulus has {name} in {wanted}; its values are "
                             f"{sorted(set(values.tolist()), key=str)[:20]}")
        keep &= match
    if not keep.any():
        raise ValueError(f"no stimulus meets all of {conditions}")
    return data.isel(presentation=np.flatnonzero(keep))


def decorrelation_from_file(
    path, layers=None, *, n_boot: int = 0, seed: int = 0, chunk_size: int | None = None
) -> xr.Dataset:
    """Decorrelation L, mean |r| and participation ratio of every layer of an activation file.

    With ``chunk_size`` each layer is streamed in feature chunks (memory bounded by the n × n
    Gram matrix and one chunk); mean |r| and bootstrap intervals then are not computed, since
    they need the layer more than once.
    """
    from neuroalign.analysis.decorrelation import layerwise_decorrelation

    if chunk_size:
        if n_boot:
            raise ValueError("Bootstrap intervals need the whole layer: drop chunk_size or n_boot.")
        ds = layerwise_decorrelation(iter_layer_chunks(path, layers, chunk_size), mean_abs_r=False)
    else:
        ds = layerwise_decorrelation(iter_layers(path, layers), n_boot=n_boot, seed=seed)
    ds.attrs.update(_source_attrs(path))
    return add_variable_attrs(ds)


def rsa_from_file(
    path,
    brain: str = "kriegeskorte-hit",
    layers=None,
    *,
    rdm_method: str = "correlation",
    compare_method: str = "spearman",
    pool_sessions: str = "rdms",
    n_boot: int = 0,
    resample: str = "stimuli",
    seed: int = 0,
    test: str | None = None,
    chunk_size: int | None = None,
) -> xr.Dataset:
    """RSA of every layer of an activation file against brain RDMs, with the noise ceiling.

    Stimuli are matched by ``stimulus_id``, not by position. Layers are read in blocks of
    whole stimuli (`iter_layer_blocks`), so a layer never has to fit in memory and each disk
    chunk is decompressed once when it does; each layer's RDM is computed once. ``pool_sessions`` ('rdms' or 'similarities') says how a subject's
    sessions are pooled, ``resample`` ('stimuli', 'subjects', 'both') what the bootstrap
    resamples. With ``test`` ('bootstrap' or 'ttest') every pair of layers is also tested
    (``analysis.difference_test``, with ``n_boot`` or 1000 resamples): its variables are added
    with the prefix ``diff_``.
    """
    from neuroalign.analysis.rsa import layerwise_rsa

    rdms, subject = load_brain_rdms(brain)
    model = layer_rdms_from_file(path, layers, rdm_method=rdm_method, chunk_size=chunk_size)
    ds = layerwise_rsa(
        model, None, rdms, compare_method=compare_method, subject_descriptor=subject,
        pool_sessions=pool_sessions, n_boot=n_boot, resample=resample, seed=seed,
        brain_name=brain,
    )
    if test:
        from neuroalign.analysis.rsa_inference import difference_test

        tests = difference_test(
            model, rdms, compare_method, test=test, resample=resample, subject_descriptor=subject,
            pool_sessions=pool_sessions, n_boot=n_boot or 1000, seed=seed,
        )
        ds = ds.merge(tests.rename({k: f"diff_{k}" for k in tests.data_vars}),
                      combine_attrs="drop_conflicts")
    ds.attrs.update(_source_attrs(path))
    ds.attrs["brain_description"] = brain_description(brain, ds.sizes["subject"])
    if ds.sizes["subject"] == 1:
        ds.attrs["comment"] = ONE_RDM
        for name in ("sem", "noise_ceiling_lower", "noise_ceiling_upper"):
            ds.variables[name].attrs["comment"] = ONE_RDM
    return add_variable_attrs(ds)


#: Why a brain data set of one RDM has NaN for its SEM and noise ceiling.
ONE_RDM = "one RDM: no SEM or noise ceiling (both need several subjects)"


def layer_rdms_from_file(path, layers=None, *, rdm_method: str = "correlation",
                         chunk_size: int | None = None, descriptors=None):
    """One rsatoolbox RDM per layer of an activation file (rdm descriptor ``layer``), each
    layer read in stimulus blocks (`iter_layer_blocks`); ``chunk_size`` is the number of
    features per product (see `analysis.calc_rdm`)."""
    from neuroalign.analysis.rdms import calc_rdms

    ids = stimulus_coords(path)["stimulus_id"].values
    return calc_rdms(iter_layer_blocks(path, layers), ids, rdm_method,
                     descriptors=descriptors, chunk_size=chunk_size)


def model_similarity_from_files(
    path_a, path_b=None, layers_a=None, layers_b=None, *, compare_method: str = "spearman",
    rdm_method: str = "correlation", debiased: bool = False,
) -> xr.DataArray:
    """Layer × layer similarity of two models (or one with itself) on the same stimuli:
    RSA of their RDMs (``compare_method`` an rsatoolbox comparison) or linear CKA
    (``compare_method='cka'``)."""
    path_b = path_b or path_a
    if compare_method == "cka":
        from neuroalign.analysis.cka import cka_matrix

        ids_a = stimulus_coords(path_a)["stimulus_id"].values
        ids_b = stimulus_coords(path_b)["stimulus_id"].values
        if not np.array_equal(ids_a, ids_b):
            raise ValueError(
                f"CKA needs the same stimuli in the same order: {path_a} and {path_b} differ "
                f"(e.g. {sorted(set(ids_a) ^ set(ids_b))[:10]} or their order)."
            )
        da = cka_matrix(iter_layers(path_a, layers_a), dict(iter_layers(path_b, layers_b)),
                        debiased=debiased)
    else:
        from neuroalign.analysis.rsa_inference import rsa_matrix

        da = rsa_matrix(layer_rdms_from_file(path_a, layers_a, rdm_method=rdm_method),
                        layer_rdms_from_file(path_b, layers_b, rdm_method=rdm_method), compare_method)
    da.attrs.update(a=str(path_a), b=str(path_b), a_model=model_description(path_a),
                    b_model=model_description(path_b))
    method = "linear CKA" if compare_method == "cka" else f"{compare_method} similarity of RDMs"
    da.attrs["long_name"] = f"{method} of layer_a and layer_b"
    da.attrs["units"] = "1"
    for dim, side in (("layer_a", "a"), ("layer_b", "b")):
        da[dim].attrs["long_name"] = f"layer of {Path(da.attrs[side]).name}: {da.attrs[f'{side}_model']}"
    return da


def partition_from_files(brain: str, models: Sequence[str] | Mapping[str, str], *,
                         rdm_method: str = "correlation", rank: bool = False) -> xr.Dataset:
    """Unique and shared variance of a brain RDM explained by 1-6 model layers.

    ``models``: ``"path.nc:layer"`` strings (the layer's module path after the last colon),
    named ``"<file stem>:<layer>"``, or {name: ``"path.nc:layer"``} to name them yourself.
    The brain RDM regressed is the mean over subjects of each subject's RDM (its sessions
    averaged: ``pool_sessions='rdms'``).
    """
    from neuroalign.analysis.partitioning import variance_partitioning
    from neuroalign.analysis.rsa import pool_subjects

    rdms, subject = load_brain_rdms(brain)
    rdms = pool_subjects(rdms, subject, "rdms").rdms
    named = {}
    pairs = models.items() if isinstance(models, Mapping) else [(None, m) for m in models]
    for name, spec in pairs:
        path, sep, layer = str(spec).rpartition(":")
        if not sep or not path:
            raise ValueError(f"Give each model as 'file.nc:layer'; got {spec!r}.")
        named[name or f"{Path(path).stem}:{layer}"] = layer_rdms_from_file(
            path, [layer], rdm_method=rdm_method)
    ds = variance_partitioning(rdms, named, rank=rank)
    ds.attrs.update(brain=brain, models=", ".join(f"{k}={v}" if k else str(v) for k, v in pairs),
                    brain_description=brain_description(brain, len(rdms)))
    return add_variable_attrs(ds)


def probe_from_files(
    train_path,
    test_path,
    layers=None,
    *,
    label: str = "label",
    kind: str = "torch",
    seeds: Sequence[int] = (0,),
    **probe_params,
) -> xr.Dataset:
    """Linear-probe test accuracy per layer: trained on one activation file, scored on another.

    ``label`` names the presentation coordinate holding the class of each stimulus.
    """
    from neuroalign.analysis.probes import layerwise_probe

    labels = {}
    for split, p in (("train", train_path), ("test", test_path)):
        coords = stimulus_coords(p)
        if label not in coords:
            raise ValueError(
                f"{p} has no presentation coordinate {label!r} to probe for; it has "
                f"{sorted(map(str, coords.coords))}."
            )
        labels[split] = coords[label].values
    test = dict(iter_layers(test_path, layers))
    train = ((name, (x, labels["train"])) for name, x in iter_layers(train_path, layers))
    ds = layerwise_probe(train, {k: (v, labels["test"]) for k, v in test.items()}, kind=kind,
                         seeds=seeds, **probe_params)
    ds.attrs.update(train=str(train_path), test=str(test_path), n_train=len(labels["train"]),
                    n_test=len(labels["test"]), model_description=model_description(train_path))
    return add_variable_attrs(ds)


def encoding_from_file(path: str | Path, brain: str = "cowley-v4", layers=None, *,
                       folds: int = 5, alphas=None, seed: int = 0, device: str | None = None,
                       n_splits: int = 100, out: str | Path | None = None,
                       stream_kernels: bool | None = None) -> xr.Dataset:
    """Cross-validated encoding scores of an activation file's layers for brain responses
    (:func:`neuroalign.analysis.encoding.layerwise_encoding`), matched by stimulus id.

    Args:
        path: activation file; ``layers``: names (default: every layer in the file).
        brain: a registered response data set (``neuroalign.data.RESPONSE_DATA``) or a
            responses file (:func:`neuroalign.data.read_assembly`).
        folds, alphas, seed, device, n_splits: as ``layerwise_encoding``.
        out: write the results to this netCDF file (through a temporary name).
        stream_kernels: read layers as streamed n × n linear kernels (True), whole (False), or
            the first when a layer has more features than stimuli (None; see
            :func:`neuroalign.analysis.encoding_kernels.encoding_features`).

    Returns:
        The Dataset of ``layerwise_encoding``, with attributes ``activations`` and ``brain``.
    """
    from neuroalign.analysis.encoding import layerwise_encoding

    return _encoding_run(layerwise_encoding, path, brain, layers, stream_kernels, out,
                         folds=folds, alphas=alphas, seed=seed, device=device, n_splits=n_splits)


def banded_encoding_from_file(path: str | Path, brain: str, spaces: Sequence[str], *,
                              folds: int = 5, alphas=None, n_iter: int = 100, seed: int = 0,
                              device: str | None = None, n_splits: int = 100,
                              out: str | Path | None = None,
                              stream_kernels: bool | None = None) -> xr.Dataset:
    """Banded ridge over 2–6 layers of an activation file (each a feature space, a wide one read
    as its streamed kernel): each space's unique and shared held-out variance per neuroid,
    noise-corrected with repetitions (:func:`neuroalign.analysis.banded.banded_encoding`).
    Arguments as :func:`encoding_from_file`; ``spaces``: the layer names; ``n_iter``: the
    random search's draws."""
    from neuroalign.analysis.banded import banded_encoding

    if isinstance(spaces, str) or len(spaces) < 2:
        raise ValueError(f"{path}: a banded model needs 2 to 6 layers as spaces; got {spaces!r}")
    return _encoding_run(banded_encoding, path, brain, spaces, stream_kernels, out, folds=folds,
                         alphas=alphas, n_iter=n_iter, seed=seed, device=device,
                         n_splits=n_splits)


def _encoding_run(analysis, path, brain, layers, stream_kernels, out, **kw) -> xr.Dataset:
    from neuroalign.analysis.encoding_kernels import encoding_features
    from neuroalign.data.registry import load_brain_responses

    responses = load_brain_responses(brain)
    tree = open_activations(path, chunks=None)
    try:
        names = _chosen_layers(tree, path, layers)
    finally:
        tree.close()
    ids, features = encoding_features(path, names, stream_kernels)
    ds = analysis(features, responses, stimulus_id=ids, **kw)
    ds.attrs.update(activations=str(path), brain=str(brain))
    if out is not None:
        save_results(ds, out)
    return ds


def save_results(ds: xr.Dataset, out: str | Path) -> Path:
    """Write a results dataset to the netCDF file ``out``, under a temporary name, then rename."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    ds.to_netcdf(tmp, engine="netcdf4")
    os.replace(tmp, out)
    return out


def format_table(ds: xr.Dataset, variables: Sequence[str], dim: str = "layer") -> str:
    """A plain-text table of ``variables`` along ``dim``, for the terminal."""
    variables = [v for v in variables if v in ds]
    labels = [str(v) for v in ds[dim].values]
    width = max([len(dim), *map(len, labels)])
    cols = [max(len(v), 9) for v in variables]
    lines = [f"{dim:<{width}}  " + "  ".join(f"{v:>{c}}" for v, c in zip(variables, cols, strict=True))]
    for i, name in enumerate(labels):
        cells = []
        for v, c in zip(variables, cols, strict=True):
            value = float(ds[v].isel({dim: i}).values)
            cells.append(f"{value:>{c}.4g}")
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)
