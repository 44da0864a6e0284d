"""neuroalign: brain-alignment studies of foveal masked-image-modeling vision models.

Reading activation files and analysing them needs no PyTorch; pretraining and extraction do.
"""

from neuroalign._version import __version__

__all__ = ["__version__", "open_activations"]


def __getattr__(name):
    # Lazy, so that ``import neuroalign`` stays cheap and needs no torch.
    if name == "open_activations":
        from neuroalign.activations import open_activations

        return open_activations
    raise AttributeError(f"module 'neuroalign' has no attribute {name!r}")
