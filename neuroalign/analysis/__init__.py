"""Analyses of layer activations: decorrelation and dimensionality, linear probes, RSA, CKA,
variance partitioning, encoding models (ridge, banded ridge) and noise ceilings, plots.

Every function takes plain arrays (n_stimuli, n_features, ...) — numpy, torch or xarray — or
`activations`, a mapping {layer_name: array}, for the layerwise versions, and returns numbers, rsatoolbox RDMs or
xarray datasets. Stimulus-by-stimulus quantities (RDMs, decorrelation L, CKA) also take
feature chunks (an iterable of (n_stimuli, chunk) arrays, e.g. `layer_chunks(path, layer)`),
so a layer never has to fit in memory. The plot_* functions (neuroalign.analysis.plots)
import matplotlib on first use.

RSA modules depend one way: `rdms` (RDMs from activations, matching by stimulus id) <- `rsa`
(comparison, noise ceiling, the subject engine and its bootstrap, `layerwise_rsa`) <-
`rsa_inference` (bootstrap intervals, difference tests, model-vs-model RSA) and
`partitioning`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from neuroalign.analysis.banded import BandedRidgeEncoder, banded_encoding
    from neuroalign.analysis.cka import cka_from_grams, cka_matrix, gram, linear_cka
    from neuroalign.analysis.decorrelation import (
        bootstrap_decorrelation,
        decorrelation,
        decorrelation_reference,
        decorrelation_torch,
        layerwise_decorrelation,
        participation_ratio,
    )
    from neuroalign.analysis.encoding import RidgeEncoder, encoding_folds, layerwise_encoding
    from neuroalign.analysis.encoding_kernels import LinearKernel, layer_kernel, linear_kernel
    from neuroalign.analysis.partitioning import commonality, r_squared, variance_partitioning
    from neuroalign.analysis.probes import LinearProbe, SklearnProbe, layerwise_probe
    from neuroalign.analysis.rdms import RDM_METHODS, calc_rdm, calc_rdms, match_stimuli
    from neuroalign.analysis.reliability import (
        ncsnr,
        ncsnr_ceiling,
        noise_ceilings,
        split_half_reliability,
    )
    from neuroalign.analysis.rsa import (
        COMPARE_METHODS,
        POOL_SESSIONS,
        RESAMPLE,
        bootstrap_samples,
        compare,
        layerwise_rsa,
        noise_ceiling,
        pool_subjects,
    )
    from neuroalign.analysis.rsa_inference import TESTS, bootstrap_rsa, difference_test, rsa_matrix
    from neuroalign.analysis.streaming import feature_chunks, layer_chunks

# name -> the module that defines it. Imported on first use, so that a module of the package
# (a dask worker unpickling a task of `dask_gram`, say) does not import scikit-learn,
# himalaya and matplotlib with it.
_LAZY = {
    "BandedRidgeEncoder": "neuroalign.analysis.banded",
    "banded_encoding": "neuroalign.analysis.banded",
    "encoding_folds": "neuroalign.analysis.encoding",
    "LinearKernel": "neuroalign.analysis.encoding_kernels",
    "layer_kernel": "neuroalign.analysis.encoding_kernels",
    "linear_kernel": "neuroalign.analysis.encoding_kernels",
    "plot_banded_encoding": "neuroalign.analysis.plots",
    "plot_encoding_pairs": "neuroalign.analysis.plots",
    "plot_layerwise_encoding": "neuroalign.analysis.plots",
    "cka_from_grams": "neuroalign.analysis.cka",
    "cka_matrix": "neuroalign.analysis.cka",
    "gram": "neuroalign.analysis.cka",
    "linear_cka": "neuroalign.analysis.cka",
    "bootstrap_decorrelation": "neuroalign.analysis.decorrelation",
    "decorrelation": "neuroalign.analysis.decorrelation",
    "decorrelation_reference": "neuroalign.analysis.decorrelation",
    "decorrelation_torch": "neuroalign.analysis.decorrelation",
    "layerwise_decorrelation": "neuroalign.analysis.decorrelation",
    "participation_ratio": "neuroalign.analysis.decorrelation",
    "RidgeEncoder": "neuroalign.analysis.encoding",
    "layerwise_encoding": "neuroalign.analysis.encoding",
    "commonality": "neuroalign.analysis.partitioning",
    "r_squared": "neuroalign.analysis.partitioning",
    "variance_partitioning": "neuroalign.analysis.partitioning",
    "LinearProbe": "neuroalign.analysis.probes",
    "SklearnProbe": "neuroalign.analysis.probes",
    "layerwise_probe": "neuroalign.analysis.probes",
    "RDM_METHODS": "neuroalign.analysis.rdms",
    "calc_rdm": "neuroalign.analysis.rdms",
    "calc_rdms": "neuroalign.analysis.rdms",
    "match_stimuli": "neuroalign.analysis.rdms",
    "ncsnr": "neuroalign.analysis.reliability",
    "ncsnr_ceiling": "neuroalign.analysis.reliability",
    "noise_ceilings": "neuroalign.analysis.reliability",
    "split_half_reliability": "neuroalign.analysis.reliability",
    "COMPARE_METHODS": "neuroalign.analysis.rsa",
    "POOL_SESSIONS": "neuroalign.analysis.rsa",
    "RESAMPLE": "neuroalign.analysis.rsa",
    "bootstrap_samples": "neuroalign.analysis.rsa",
    "compare": "neuroalign.analysis.rsa",
    "layerwise_rsa": "neuroalign.analysis.rsa",
    "noise_ceiling": "neuroalign.analysis.rsa",
    "pool_subjects": "neuroalign.analysis.rsa",
    "TESTS": "neuroalign.analysis.rsa_inference",
    "bootstrap_rsa": "neuroalign.analysis.rsa_inference",
    "difference_test": "neuroalign.analysis.rsa_inference",
    "rsa_matrix": "neuroalign.analysis.rsa_inference",
    "feature_chunks": "neuroalign.analysis.streaming",
    "layer_chunks": "neuroalign.analysis.streaming",
    "plot_layerwise_metric": "neuroalign.analysis.plots",
    "plot_layerwise_rsa": "neuroalign.analysis.plots",
    "plot_partitioning": "neuroalign.analysis.plots",
    "plot_rdm": "neuroalign.analysis.plots",
    "plot_rsa_matrix": "neuroalign.analysis.plots",
}

__all__ = [
    "COMPARE_METHODS",
    "POOL_SESSIONS",
    "RDM_METHODS",
    "RESAMPLE",
    "TESTS",
    "BandedRidgeEncoder",
    "LinearKernel",
    "LinearProbe",
    "RidgeEncoder",
    "SklearnProbe",
    "banded_encoding",
    "bootstrap_decorrelation",
    "bootstrap_rsa",
    "bootstrap_samples",
    "calc_rdm",
    "calc_rdms",
    "cka_from_grams",
    "cka_matrix",
    "commonality",
    "compare",
    "decorrelation",
    "decorrelation_reference",
    "decorrelation_torch",
    "difference_test",
    "encoding_folds",
    "feature_chunks",
    "gram",
    "layer_chunks",
    "layer_kernel",
    "layerwise_decorrelation",
    "layerwise_encoding",
    "layerwise_probe",
    "layerwise_rsa",
    "linear_cka",
    "linear_kernel",
    "match_stimuli",
    "ncsnr",
    "ncsnr_ceiling",
    "noise_ceiling",
    "noise_ceilings",
    "participation_ratio",
    "plot_banded_encoding",
    "plot_encoding_pairs",
    "plot_layerwise_encoding",
    "plot_layerwise_metric",
    "plot_layerwise_rsa",
    "plot_partitioning",
    "plot_rdm",
    "plot_rsa_matrix",
    "pool_subjects",
    "r_squared",
    "rsa_matrix",
    "split_half_reliability",
    "variance_partitioning",
]


# a submodule shares this function's name: imported now, so that importing the submodule
# later (which sets the package attribute to the module) cannot shadow it
from neuroalign.analysis.decorrelation import decorrelation  # noqa: E402


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'neuroalign.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
