"""File-level stages: activation files and brain data in, results datasets out.

These are what the CLI sub-commands and ``neuroalign demo`` call; the metrics themselves are
plain array functions in :mod:`neuroalign.analysis`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from neuroalign.activations import flatten, layer_names, open_activations

#: Brain RDMs by name: (loader, rdm descriptor naming the subject, or None).
#: The RDMs of one subject (its sessions) are averaged into one RDM before comparison and
#: noise ceilings, as Kriegeskorte et al. (2008) did.
BRAIN_DATA: dict[str, tuple[Callable, str | None]] = {}


def _register_brain_data() -> None:
    from neuroalign.data import brain

    BRAIN_DATA.update({
        "kriegeskorte-hit": (brain.load_kriegeskorte_hit, "subject"),
        "kriegeskorte-mit": (brain.load_kriegeskorte_mit, None),
        "kriegeskorte-behaviour": (brain.load_kriegeskorte_behaviour, "subject"),
        "cichy-it": (lambda: brain.load_cichy("IT"), "subject"),
        "cichy-evc": (lambda: brain.load_cichy("EVC"), "subject"),
        "algonauts-it": (lambda: brain.load_algonauts("IT"), "subject"),
        "algonauts-evc": (lambda: brain.load_algonauts("EVC"), "subject"),
    })


_register_brain_data()


def load_brain_rdms(name: str):
    """(RDMs, subject descriptor) of a registered brain data set, or of an rsatoolbox RDMs file."""
    if name in BRAIN_DATA:
        loader, subject = BRAIN_DATA[name]
        rdms = loader()
        if subject is not None and len(set(rdms.rdm_descriptors[subject])) < rdms.n_rdm:
            from neuroalign.data.brain import average_by

            rdms = average_by(rdms, subject)  # one RDM per subject: sessions averaged
        return rdms, subject
    if name.endswith(".nc"):
        from neuroalign.data.responses import load_responses

        rdms = load_responses(name)
        return rdms, "subject" if "subject" in rdms.rdm_descriptors else None
    if os.path.sep in name or name.endswith((".hdf5", ".h5", ".pkl")):
        from neuroalign.data.brain import load_rdms_file

        rdms = load_rdms_file(name)
        return rdms, "subject" if "subject" in rdms.rdm_descriptors else None
    close = difflib.get_close_matches(name, list(BRAIN_DATA), n=3, cutoff=0.4)
    raise ValueError(
        f"Unknown brain data {name!r}; valid names: {', '.join(BRAIN_DATA)}, the path of an "
        "rsatoolbox RDMs file, or a responses netCDF (presentation × neuroid, 'region' coord)." + (f" Did you mean {close[0]!r}?" if close else "")
    )


def iter_layers(path: str | Path, layers: Sequence[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(layer, activations (n_stimuli, n_units) float64) for each layer, one in memory at a time."""
    tree = open_activations(path, chunks=None)
    try:
        for layer in layers or layer_names(tree):
            yield layer, np.asarray(flatten(tree, layer).values, dtype=np.float64)
    finally:
        tree.close()


def iter_layer_chunks(path: str | Path, layers: Sequence[str] | None = None, chunk_size: int = 4096):
    """(layer, iterator of (n_stimuli, ≤ chunk_size) feature chunks) for each layer: memory stays
    bounded by one chunk whatever the layer's size."""
    from neuroalign.analysis.streaming import layer_chunks

    tree = open_activations(path, chunks=None)
    try:
        names = list(layers or layer_names(tree))
    finally:
        tree.close()
    for layer in names:
        yield layer, layer_chunks(path, layer, chunk_size)


def stimulus_coords(path: str | Path) -> xr.Dataset:
    """The presentation coordinates (``stimulus_id``, ``label`` …) of an activation file."""
    tree = open_activations(path, chunks=None)
    try:
        return tree.to_dataset(inherit=False).coords.to_dataset().load()
    finally:
        tree.close()


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
    ds.attrs["activations"] = str(path)
    return ds


def rsa_from_file(
    path,
    brain: str = "kriegeskorte-hit",
    layers=None,
    *,
    rdm_method: str = "correlation",
    compare_method: str = "spearman",
    n_boot: int = 0,
    resample: str = "stimuli",
    seed: int = 0,
    chunk_size: int = 4096,
) -> xr.Dataset:
    """RSA of every layer of an activation file against brain RDMs, with the noise ceiling.

    Stimuli are matched by ``stimulus_id``, not by position. Layers are streamed from the
    file ``chunk_size`` features at a time, so a layer never has to fit in memory.
    ``resample`` ('stimuli', 'subjects', 'both') chooses what the bootstrap resamples.
    """
    from neuroalign.analysis.rsa import layerwise_rsa

    rdms, subject = load_brain_rdms(brain)
    ids = stimulus_coords(path)["stimulus_id"].values
    ds = layerwise_rsa(
        iter_layer_chunks(path, layers, chunk_size), ids, rdms,
        rdm_method=rdm_method, compare_method=compare_method, subject_descriptor=subject,
        n_boot=n_boot, resample=resample, seed=seed, brain_name=brain, chunk_size=chunk_size,
    )
    ds.attrs["activations"] = str(path)
    return ds


def layer_rdms_from_file(path, layers=None, *, rdm_method: str = "correlation",
                         chunk_size: int = 4096, descriptors=None):
    """One rsatoolbox RDM per layer of an activation file (rdm descriptor ``layer``)."""
    from neuroalign.analysis.rsa import calc_rdms

    ids = stimulus_coords(path)["stimulus_id"].values
    return calc_rdms(iter_layer_chunks(path, layers, chunk_size), ids, rdm_method,
                     descriptors=descriptors, chunk_size=chunk_size)


def layer_differences_from_file(
    path, brain: str = "kriegeskorte-hit", layers=None, *, rdm_method: str = "correlation",
    compare_method: str = "spearman", test: str = "bootstrap", resample: str = "stimuli",
    n_boot: int = 1000, seed: int = 0,
) -> xr.Dataset:
    """Is layer A closer to the brain than layer B? Every pair of layers, tested
    (``analysis.difference_test``: paired bootstrap, or a paired t-test over subjects)."""
    from neuroalign.analysis.rsa_inference import difference_test

    rdms, subject = load_brain_rdms(brain)
    model = layer_rdms_from_file(path, layers, rdm_method=rdm_method)
    ds = difference_test(model, rdms, compare_method, test=test, resample=resample,
                         subject_descriptor=subject, n_boot=n_boot, seed=seed)
    ds.attrs.update(activations=str(path), brain=brain)
    return ds


def model_similarity_from_files(
    path_a, path_b=None, layers_a=None, layers_b=None, *, method: str = "spearman",
    rdm_method: str = "correlation", debiased: bool = False,
) -> xr.DataArray:
    """Layer × layer similarity of two models (or one with itself) on the same stimuli:
    RSA of their RDMs (``method`` an rsatoolbox comparison) or linear CKA (``method='cka'``)."""
    path_b = path_b or path_a
    if method == "cka":
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
                        layer_rdms_from_file(path_b, layers_b, rdm_method=rdm_method), method)
    da.attrs.update(a=str(path_a), b=str(path_b), method=method)
    return da


def partition_from_files(brain: str, models: Sequence[str], *, rdm_method: str = "correlation",
                         rank: bool = False) -> xr.Dataset:
    """Unique and shared variance of a brain RDM explained by 2-6 model layers.

    ``models``: ``"path.nc:layer"`` strings (the layer's module path after the last colon).
    """
    from neuroalign.analysis.partitioning import variance_partitioning

    rdms, _ = load_brain_rdms(brain)
    named = {}
    for spec in models:
        path, sep, layer = str(spec).rpartition(":")
        if not sep or not path:
            raise ValueError(f"Give each model as 'file.nc:layer'; got {spec!r}.")
        named[f"{Path(path).stem}:{layer}"] = layer_rdms_from_file(path, [layer], rdm_method=rdm_method)
    ds = variance_partitioning(rdms, named, rank=rank)
    ds.attrs.update(brain=brain, models=", ".join(map(str, models)))
    return ds


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
                f"{sorted(coords.coords)}."
            )
        labels[split] = coords[label].values
    test = dict(iter_layers(test_path, layers))
    train = ((name, (x, labels["train"])) for name, x in iter_layers(train_path, layers))
    ds = layerwise_probe(train, {k: (v, labels["test"]) for k, v in test.items()}, kind=kind,
                         seeds=seeds, **probe_params)
    ds.attrs.update(train=str(train_path), test=str(test_path), n_train=len(labels["train"]),
                    n_test=len(labels["test"]))
    return ds


def save_results(ds: xr.Dataset, path: str | Path) -> Path:
    """Write a results dataset to netCDF under a temporary name, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    ds.to_netcdf(tmp, engine="netcdf4")
    os.replace(tmp, path)
    return path


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
