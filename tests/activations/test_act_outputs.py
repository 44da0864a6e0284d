"""Modules returning tuples, lists or dicts (output_element); shared modules warned about once;
the mask specification."""

import warnings
from collections import OrderedDict

import netCDF4
import numpy as np
import pytest
import torchvision
from torch import nn

from neuroalign.data.stimuli import StimulusSet
from neuroalign.extraction import extract, image_transform
from neuroalign.masking import parse_mask_spec


def toy_stimuli(n=5):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    return StimulusSet(stimulus_id=[f"t{i}" for i in range(n)], images=images, name="toy")


class Pair(nn.Module):
    """Returns (2x, -x) as a tuple, or as a dict with keys 'double', 'negative'."""

    def __init__(self, as_dict=False):
        super().__init__()
        self.as_dict = as_dict

    def forward(self, x):
        out = (2 * x, -x)
        return OrderedDict(double=out[0], negative=out[1]) if self.as_dict else out


class Net(nn.Module):
    def __init__(self, as_dict=False):
        super().__init__()
        self.pair = Pair(as_dict)
        self.head = nn.Flatten()

    def forward(self, x):
        out = self.pair(x)
        return self.head(out["double"] if isinstance(out, dict) else out[0])


OPTIONS = dict(transform=image_transform(8), batch_size=2, progress=False)


def pixels(stimuli):
    return np.stack([image_transform(8)[0](stimuli.image(i)).numpy() for i in range(len(stimuli))])


def read(path, layer="pair"):
    with netCDF4.Dataset(path) as ds:
        return np.asarray(ds[f"{layer}/activation"][:]), ds[layer].getncattr("output_element")


def test_tuple_output_keeps_element_0_and_says_so_once(tmp_path):
    stimuli = toy_stimuli()
    with pytest.warns(RuntimeWarning, match=r"\['pair'\] return a tuple, list or mapping; kept: pair:0") as record:
        path = extract(Net(), stimuli, ["pair"], out=tmp_path / "a.nc", **OPTIONS)
    assert sum("kept: pair:0" in str(w.message) for w in record) == 1  # 3 batches, one warning
    values, element = read(path)
    np.testing.assert_allclose(values, 2 * pixels(stimuli), rtol=1e-6)
    assert element == "0"


def test_chosen_tuple_element(tmp_path):
    stimuli = toy_stimuli()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a chosen element is not warned about
        path = extract(Net(), stimuli, ["pair"], out=tmp_path / "a.nc",
                       output_element={"pair": 1}, **OPTIONS)
    values, element = read(path)
    np.testing.assert_allclose(values, -pixels(stimuli), rtol=1e-6)
    assert element == "1"
    with netCDF4.Dataset(path) as ds:
        assert ds.getncattr("output_element") == "pair=1"


def test_dict_output_keeps_its_first_entry_or_the_key_named(tmp_path):
    stimuli = toy_stimuli()
    with pytest.warns(RuntimeWarning, match=r"kept: pair:double"):
        path = extract(Net(as_dict=True), stimuli, ["pair"], out=tmp_path / "a.nc", **OPTIONS)
    values, element = read(path)
    np.testing.assert_allclose(values, 2 * pixels(stimuli), rtol=1e-6)
    assert element == "double"
    path = extract(Net(as_dict=True), stimuli, ["pair:negative"], out=tmp_path / "b.nc", **OPTIONS)
    values, element = read(path)
    np.testing.assert_allclose(values, -pixels(stimuli), rtol=1e-6)
    assert element == "negative"
    with pytest.raises(ValueError, match=r"'pair' returns a OrderedDict without the key 'half'; its keys are \['double', 'negative'\]"):
        extract(Net(as_dict=True), stimuli, ["pair"], out=tmp_path / "c.nc",
                output_element={"pair": "half"}, **OPTIONS)


@pytest.mark.parametrize("choice, error", [
    ({"pair": "nope"}, r"'pair' returns a tuple of 2 elements; 'nope' is not an index"),
    ({"pair": 2}, r"'pair' returns a tuple of 2 elements; 2 is not an index"),
    ({"head.x": 0}, r"names layers not extracted: \['head.x'\]"),
])
def test_bad_output_element(tmp_path, choice, error):
    with pytest.raises(ValueError, match=error):
        extract(Net(), toy_stimuli(), ["pair"], out=tmp_path / "a.nc", output_element=choice,
                **OPTIONS)


def test_shared_modules_of_resnet18_are_named_in_one_warning(tmp_path):
    stimuli = toy_stimuli(3)
    model = torchvision.models.resnet18(weights=None)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        extract(model, stimuli, "all", out=tmp_path / "a.nc", transform=image_transform(32),
                batch_size=2, progress=False)
    shared = [w for w in record if "several times" in str(w.message)]
    assert len(shared) == 1
    named = str(shared[0].message).split(": ", 1)[1].rstrip(".").split(", ")
    assert named == [f"layer{i}.{j}.relu (2x)" for i in range(1, 5) for j in range(2)]


@pytest.mark.parametrize("spec, expected", [
    ("periphery", ("periphery", 0.8, "mean", 8)),
    ("centre", ("centre", 0.2, "mean", 8)),
    ("patches:0.5:grey", ("patches", 0.5, "grey", 8)),
    ({"strategy": "patches", "patch_size": 4}, ("patches", 0.6, "mean", 4)),
    ("fovea", ("fovea", 0.6, "mean", 8)),
])
def test_parse_mask_spec(spec, expected):
    parsed = parse_mask_spec(spec)
    assert tuple(parsed[k] for k in ("strategy", "ratio", "fill", "patch_size")) == expected


@pytest.mark.parametrize("spec, error", [
    ("patches:x", r"ratio of mask 'patches:x' is not a number"),
    ("a:0.1:mean:extra", r"STRATEGY\[:RATIO\[:FILL\]\]"),
    ("spiral", r"strategy must be one of"),
    ("periphery:1.5", r"ratio must lie in \[0, 1\]"),
    ("periphery:0.5:pink", r"fill must be one of"),
    ({"strategy": "patches", "radius": 3}, r"Unknown 'mask' keys \['radius'\]"),
])
def test_parse_mask_spec_errors(spec, error):
    with pytest.raises(ValueError, match=error):
        parse_mask_spec(spec)
