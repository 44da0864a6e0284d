"""Analyses of layer activations: decorrelation and dimensionality, linear probes, RSA, plots.

Every function takes plain arrays (n_stimuli, n_features, ...) — numpy, torch or xarray — or a
mapping {layer_name: array} for the layerwise versions, and returns numbers, rsatoolbox RDMs or
xarray datasets. The plot_* functions (neuroalign.analysis.plots) import matplotlib on first use.
"""

from neuroalign.analysis.decorrelation import (
    bootstrap_decorrelation,
    decorrelation,
    decorrelation_reference,
    decorrelation_torch,
    layerwise_decorrelation,
    participation_ratio,
)
from neuroalign.analysis.probes import LinearProbe, SklearnProbe, layerwise_probe
from neuroalign.analysis.rsa import (
    COMPARE_METHODS,
    RDM_METHODS,
    calc_rdm,
    check_and_reorder,
    compare,
    layerwise_rsa,
    noise_ceiling,
)

__all__ = [
    "COMPARE_METHODS",
    "RDM_METHODS",
    "LinearProbe",
    "SklearnProbe",
    "bootstrap_decorrelation",
    "calc_rdm",
    "check_and_reorder",
    "compare",
    "decorrelation",
    "decorrelation_reference",
    "decorrelation_torch",
    "layerwise_decorrelation",
    "layerwise_probe",
    "layerwise_rsa",
    "noise_ceiling",
    "participation_ratio",
    "plot_layerwise_metric",
    "plot_layerwise_rsa",
    "plot_rdm",
]

_PLOTS = ("plot_layerwise_metric", "plot_layerwise_rsa", "plot_rdm")


def __getattr__(name):
    # Lazy, so that importing the analyses does not import matplotlib.
    if name in _PLOTS:
        from neuroalign.analysis import plots

        return getattr(plots, name)
    raise AttributeError(f"module 'neuroalign.analysis' has no attribute {name!r}")
