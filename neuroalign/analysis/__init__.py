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

_PLOTS = (
    "plot_banded_encoding",
    "plot_encoding_pairs",
    "plot_layerwise_encoding",
    "plot_layerwise_metric",
    "plot_layerwise_rsa",
    "plot_partitioning",
    "plot_rdm",
    "plot_rsa_matrix",
    "pool_subjects",
)


def __getattr__(name):
    # Lazy, so that importing the analyses does not import matplotlib.
    if name in _PLOTS:
        from neuroalign.analysis import plots

        return getattr(plots, name)
    raise AttributeError(f"module 'neuroalign.analysis' has no attribute {name!r}")
