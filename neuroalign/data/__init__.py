"""Image datasets, stimulus sets and brain data loaders."""

from neuroalign.data.stimuli import StimulusSet

__all__ = ["StimulusSet"]
