"""Figures for analysis results: layerwise RSA with noise ceiling, RDM heatmaps, metric bars.

Each function writes `<out>.png` and `<out>.svg` (whatever suffix `out` has), each to a
temporary file renamed when complete, and returns the two paths. Matplotlib's Agg backend is
used, so no display is needed.
"""


from neuroalign.analysis.plots.encoding import (
    plot_banded_encoding,
    plot_encoding_pairs,
    plot_layerwise_encoding,
)
from neuroalign.analysis.plots.figures import save_figure
from neuroalign.analysis.plots.layerwise import (
    plot_layerwise_metric,
    plot_layerwise_panels,
    plot_layerwise_rsa,
)
from neuroalign.analysis.plots.matrices import plot_partitioning, plot_rsa_matrix
from neuroalign.analysis.plots.rdm import plot_rdm

__all__ = [
    "plot_banded_encoding",
    "plot_encoding_pairs",
    "plot_layerwise_encoding",
    "plot_layerwise_metric",
    "plot_layerwise_panels",
    "plot_layerwise_rsa",
    "plot_partitioning",
    "plot_rdm",
    "plot_rsa_matrix",
    "save_figure",
]
