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
    if os.path.sep in name or name.endswith((".hdf5", ".h5", ".pkl")):
        from neuroalign.data.brain import load_rdms_file

        rdms = load_rdms_file(name)
        return rdms, "subject" if "subject" in rdms.rdm_descriptors else None
    close = difflib.get_close_matches(name, list(BRAIN_DATA), n=3, cutoff=0.4)
    raise ValueError(
        f"Unknown brain data {name!r}; valid names: {', '.join(BRAIN_DATA)}, or the path of an "
        "rsatoolbox RDMs file." + (f" Did you mean {close[0]!r}?" if close else "")
    )


def iter_layers(path: str | Path, layers: Sequence[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(layer, activations (n_stimuli, n_units) float64) for each layer, one in memory at a time."""
    tree = open_activations(path, chunks=None)
    try:
        for layer in layers or layer_names(tree):
            yield layer, np.asarray(flatten(tree, layer).values, dtype=np.float64)
    finally:
        tree.close()


def stimulus_coords(path: str | Path) -> xr.Dataset:
    """The presentation coordinates (``stimulus_id``, ``label`` …) of an activation file."""
    tree = open_activations(path, chunks=None)
    try:
        return tree.to_dataset(inherit=False).coords.to_dataset().load()
    finally:
        tree.close()


def decorrelation_from_file(path, layers=None, *, n_boot: int = 0, seed: int = 0) -> xr.Dataset:
    """Decorrelation L, mean |r| and participation ratio of every layer of an activation file."""
    from neuroalign.analysis.decorrelation import layerwise_decorrelation

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
    seed: int = 0,
) -> xr.Dataset:
    """RSA of every layer of an activation file against brain RDMs, with the noise ceiling.

    Stimuli are matched by ``stimulus_id``, not by position.
    """
    from neuroalign.analysis.rsa import layerwise_rsa

    rdms, subject = load_brain_rdms(brain)
    ids = stimulus_coords(path)["stimulus_id"].values
    ds = layerwise_rsa(
        iter_layers(path, layers), ids, rdms,
        rdm_method=rdm_method, compare_method=compare_method, subject_descriptor=subject,
        n_boot=n_boot, seed=seed, brain_name=brain,
    )
    ds.attrs["activations"] = str(path)
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
