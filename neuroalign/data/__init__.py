"""Image datasets, stimulus sets and brain data loaders."""

from neuroalign.data.assemblies import (
    average_repetitions,
    make_assembly,
    read_assembly,
    write_assembly,
)
from neuroalign.data.brain import (
    load_algonauts,
    load_cichy,
    load_kriegeskorte_behaviour,
    load_kriegeskorte_fig1,
    load_kriegeskorte_hit,
    load_kriegeskorte_mit,
    load_kriegeskorte_models,
    load_rdms_file,
)
from neuroalign.data.cifar import load_cifar10
from neuroalign.data.clips import ClipSet
from neuroalign.data.cowley import load_cowley_v4, load_cowley_v4_images
from neuroalign.data.files import FILES, cache_dir, data_root, fetch, sha256sum
from neuroalign.data.registry import (
    BRAIN_DATA,
    RESPONSE_DATA,
    BrainData,
    brain_description,
    load_brain_rdms,
    load_brain_responses,
)
from neuroalign.data.responses import CV_RDM_METHODS, load_responses, response_rdms
from neuroalign.data.stimuli import StimulusSet
from neuroalign.data.stimulus_sets import (
    STIMULUS_SETS,
    load_algonauts78,
    load_cichy92,
    load_kriegeskorte92,
    load_stimulus_set,
)

__all__ = [
    "ClipSet",
    "BRAIN_DATA",
    "CV_RDM_METHODS",
    "BrainData",
    "FILES",
    "RESPONSE_DATA",
    "STIMULUS_SETS",
    "StimulusSet",
    "average_repetitions",
    "brain_description",
    "cache_dir",
    "data_root",
    "fetch",
    "load_algonauts",
    "load_algonauts78",
    "load_brain_rdms",
    "load_brain_responses",
    "load_cichy",
    "load_cichy92",
    "load_cifar10",
    "load_cowley_v4",
    "load_cowley_v4_images",
    "load_kriegeskorte92",
    "load_kriegeskorte_behaviour",
    "load_kriegeskorte_fig1",
    "load_kriegeskorte_hit",
    "load_kriegeskorte_mit",
    "load_kriegeskorte_models",
    "load_rdms_file",
    "load_responses",
    "load_stimulus_set",
    "make_assembly",
    "read_assembly",
    "response_rdms",
    "sha256sum",
    "write_assembly",
]
