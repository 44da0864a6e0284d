"""What results files and the rsa command say about themselves (issue 10): CF long_name and
units on every variable, the model / stimuli / brain data in words, why a single brain RDM has
no SEM or noise ceiling, and empty layer or stimulus choices refused."""

import netCDF4
import numpy as np
import pytest
import rsatoolbox
import xarray as xr
from scipy.spatial.distance import pdist

from neuroalign import workflows
from neuroalign.activations import ActivationWriter, layer_activation, open_activations
from neuroalign.cli import main
from neuroalign.data.registry import BRAIN_DATA, brain_description
from neuroalign.variable_attrs import add_variable_attrs

N = 30
IDS = np.array([f"stim{i:02d}" for i in range(N)])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two activation files (train/test for a probe too), 3-subject and 1-RDM brain files."""
    root = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(N, 4))
    label = np.arange(N) % 3
    paths = {}
    for name in ("a", "b"):
        paths[name] = root / f"acts_{name}.nc"
        layers = {f"encoder.blocks.{i}": latent @ rng.normal(size=(4, 20)) + i * rng.normal(size=(N, 20))
                  for i in range(3)}
        attrs = {"model": "conv_mae", "checkpoint": f"/runs/{name}/checkpoint.pt",
                 "training_steps": 400, "stimulus_set": "toy30"}
        coords = {"label": label, "face": label == 0,
                  "category": np.array(["human face", "nonhuman face", "body"])[label]}
        with ActivationWriter(paths[name], attrs=attrs) as w:
            w.write_batch({k: v.astype(np.float32) for k, v in layers.items()}, IDS, coords)
    three = rsatoolbox.rdm.RDMs(
        np.array([pdist(latent + rng.normal(size=latent.shape), "correlation") for _ in range(3)]),
        rdm_descriptors={"subject": ["s1", "s2", "s3"]}, pattern_descriptors={"stimulus_id": list(IDS)})
    one = rsatoolbox.rdm.RDMs(three.dissimilarities[:1], pattern_descriptors={"stimulus_id": list(IDS)})
    for name, rdms in (("three", three), ("one", one)):
        paths[name] = root / f"brain_{name}.hdf5"
        rdms.save(str(paths[name]), file_type="hdf5")
    return paths


def _check_described(path):
    """Like reading `ncdump -h`: every variable and coordinate has a long_name; data variables
    have units."""
    with netCDF4.Dataset(path) as nc:
        assert nc.variables
        for name, var in nc.variables.items():
            attrs = var.ncattrs()
            assert "long_name" in attrs and var.long_name.strip(), (path.name, name)
            if var.dimensions != (name,) and not name.startswith("n_models"):
                assert "units" in attrs, (path.name, name)


def test_every_results_file_explains_its_variables(files, tmp_path):
    a, b = files["a"], files["b"]
    results = {
        "rsa": workflows.rsa_from_file(a, str(files["three"]), n_boot=5, test="bootstrap"),
        "decorrelation": workflows.decorrelation_from_file(a, n_boot=5),
        "decorrelation_streamed": workflows.decorrelation_from_file(a, chunk_size=7),
        "probe": workflows.probe_from_files(a, b, kind="sklearn", seeds=(0, 1)),
        "partition": workflows.partition_from_files(
            str(files["three"]), [f"{a}:encoder.blocks.0", f"{b}:encoder.blocks.2"]),
        "cka": workflows.model_similarity_from_files(a, b, compare_method="cka").to_dataset(),
        "rsa_matrix": workflows.model_similarity_from_files(a, b).to_dataset(name="similarity"),
    }
    for name, ds in results.items():
        path = workflows.save_results(ds, tmp_path / f"{name}.nc")
        _check_described(path)
    with netCDF4.Dataset(tmp_path / "rsa.nc") as nc:
        assert nc["mean"].long_name == (
            "spearman similarity of the layer RDM with the brain RDM, mean over subjects")
        assert nc["mean"].units == "1"
        assert nc["ci_lo"].long_name.startswith("lower bound of the 95% bootstrap interval")
        assert nc["diff_p_value"].long_name.startswith("layer pair test: p-value")
    with netCDF4.Dataset(tmp_path / "cka.nc") as nc:
        assert nc["layer_a"].long_name == (
            "layer of acts_a.nc: conv_mae, checkpoint a/checkpoint.pt (step 400)")
        assert nc["layer_b"].long_name.startswith("layer of acts_b.nc")


def test_add_variable_attrs_names_and_leaves_unknown_alone():
    ds = xr.Dataset({"L": ("layer", [1.0]), "L_hi": ("layer", [2.0]), "mystery": ("layer", [0.0])},
                    coords={"layer": ["x"]}, attrs={"ci": 0.9})
    add_variable_attrs(ds, {"mystery": ("a value", "m")})
    assert ds["L"].attrs == {"long_name": ds["L"].attrs["long_name"], "units": "1"}
    assert "sum_{i!=j}" in ds["L"].attrs["long_name"]
    assert ds["L_hi"].attrs["long_name"].startswith("upper bound of the 90% bootstrap interval")
    assert ds["mystery"].attrs == {"long_name": "a value", "units": "m"}
    assert ds["layer"].attrs == {"long_name": "layer (module path)"}


def test_rsa_results_name_model_stimuli_and_brain(files):
    ds = workflows.rsa_from_file(files["a"], str(files["three"]))
    assert ds.attrs["model_description"] == "conv_mae, checkpoint a/checkpoint.pt (step 400)"
    assert ds.attrs["stimulus_set"] == "toy30"
    assert ds.attrs["brain_description"] == "brain RDMs from brain_three.hdf5, 3 subjects"
    assert "comment" not in ds.attrs


def test_registered_brain_data_are_described():
    assert all(entry.description for entry in BRAIN_DATA.values())
    assert brain_description("kriegeskorte-hit", 4) == (
        "human IT fMRI, Kriegeskorte et al. 2008, 4 subjects")
    assert brain_description("kriegeskorte-mit", 1).endswith(", one RDM")


def test_rsa_against_one_rdm_says_why_sem_and_ceiling_are_nan(files, tmp_path, capsys):
    out = tmp_path / "one.nc"
    assert main(["rsa", str(files["a"]), "--brain", str(files["one"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "one RDM: no SEM or noise ceiling" in printed
    assert "noise ceiling: lower nan" not in printed
    ds = xr.load_dataset(out)
    assert np.isnan(ds["sem"]).all() and np.isnan(float(ds["noise_ceiling_upper"]))
    assert ds.attrs["comment"] == workflows.ONE_RDM
    assert ds["noise_ceiling_lower"].attrs["comment"] == workflows.ONE_RDM
    assert main(["rsa", str(files["a"]), "--brain", str(files["three"])]) == 0
    printed = capsys.readouterr().out
    assert "noise ceiling: lower 0." in printed and "one RDM" not in printed


@pytest.mark.shared_data("kriegeskorte92/Kriegeskorte_Neuron2008_supplementalData.mat")
def test_kriegeskorte_mit_is_one_rdm(shared_data):
    from neuroalign.data.registry import load_brain_rdms

    rdms, subject = load_brain_rdms("kriegeskorte-mit")
    assert rdms.n_rdm == 1 and subject is None


def test_an_empty_layer_choice_is_an_error(files):
    with pytest.raises(ValueError, match="acts_a.nc: the layers chosen .* select no layer"):
        workflows.decorrelation_from_file(files["a"], [])
    with pytest.raises(ValueError, match="select no layer"):
        list(workflows.iter_layers(files["a"], ""))
    one = workflows.decorrelation_from_file(files["a"], "encoder.blocks.1")  # a name, not letters
    assert list(one.layer.values) == ["encoder.blocks.1"]


def test_select_stimuli_refuses_an_empty_selection(files):
    tree = open_activations(files["a"])
    try:
        da = layer_activation(tree, "encoder.blocks.0")
        faces = workflows.select_stimuli(da, face=True)
        assert faces.sizes["presentation"] == 10
        both = workflows.select_stimuli(da, category=["human face", "nonhuman face"])
        assert list(both.stimulus_id.values) == [s for i, s in enumerate(IDS) if i % 3 != 2]
        np.testing.assert_array_equal(faces.values, da.values[::3])
        with pytest.raises(ValueError, match=r"no stimulus has category in \['face'\].*'human face'"):
            workflows.select_stimuli(da, category="face")
        with pytest.raises(ValueError, match="no presentation coordinate 'colour'"):
            workflows.select_stimuli(da, colour="red")
        with pytest.raises(ValueError, match="no stimulus meets all"):
            workflows.select_stimuli(da, face=True, category="body")
    finally:
        tree.close()
