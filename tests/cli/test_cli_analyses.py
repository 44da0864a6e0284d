"""The analysis sub-commands (rsa, compare-models, partition, decorrelation) on a small synthetic
activation file and a user's brain RDMs file, checked against plain computations."""

import numpy as np
import pytest
import rsatoolbox
import scipy.stats
import xarray as xr
from scipy.spatial.distance import pdist

from neuroalign.activations import ActivationWriter
from neuroalign.cli import main

N = 40
IDS = np.array([f"stim{i:02d}" for i in range(N)])


def _spearman(a, b):
    a, b = scipy.stats.rankdata(a), scipy.stats.rankdata(b)
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An activation file (stimuli shuffled) and a brain RDMs file (3 subjects x 2 sessions)."""
    root = tmp_path_factory.mktemp("analyses")
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(N, 5)) @ rng.normal(size=(5, 30))
    layers = {
        "block0": rng.normal(size=(N, 50)),
        "block1": latent @ rng.normal(size=(30, 60)) + 3.0 * rng.normal(size=(N, 60)),
        "block2": latent @ rng.normal(size=(30, 40)) + 0.5 * rng.normal(size=(N, 40)),
    }
    perm = rng.permutation(N)
    path = root / "acts.nc"
    with ActivationWriter(path) as writer:
        writer.write_batch({k: v[perm].astype(np.float32) for k, v in layers.items()}, IDS[perm])
    vectors = [pdist(latent + 2.0 * rng.normal(size=latent.shape), "correlation") for _ in range(6)]
    brain = rsatoolbox.rdm.RDMs(
        np.array(vectors),
        dissimilarity_measure="correlation",
        rdm_descriptors={"subject": ["s1", "s1", "s2", "s2", "s3", "s3"], "session": [1, 2] * 3},
        pattern_descriptors={"stimulus_id": list(IDS)},
    )
    brain_path = root / "brain.hdf5"
    brain.save(str(brain_path), file_type="hdf5")
    model = {k: pdist(v.astype(np.float32).astype(np.float64), "correlation") for k, v in layers.items()}
    return path, brain_path, model, np.array(vectors)


@pytest.mark.parametrize("pool", ["rdms", "similarities"])
def test_rsa_pools_sessions_as_asked(files, tmp_path, pool, capsys):
    acts, brain, model, vectors = files
    out = tmp_path / "rsa.nc"
    assert main(["rsa", str(acts), "--brain", str(brain), "--pool-sessions", pool,
                 "--out", str(out)]) == 0
    ds = xr.load_dataset(out)
    assert list(ds.subject.values) == ["s1", "s2", "s3"] and ds.attrs["pool_sessions"] == pool
    for layer, m in model.items():
        if pool == "rdms":
            expected = [_spearman(m, vectors[2 * s : 2 * s + 2].mean(0)) for s in range(3)]
        else:
            expected = [np.mean([_spearman(m, v) for v in vectors[2 * s : 2 * s + 2]])
                        for s in range(3)]
        np.testing.assert_allclose(ds["similarity"].sel(layer=layer), expected, atol=1e-6)
    assert "noise ceiling: lower" in capsys.readouterr().out


def test_rsa_test_computes_each_layer_rdm_once(files, tmp_path, monkeypatch, capsys):
    import neuroalign.analysis.rdms as rdms_module

    acts, brain, _, _ = files
    calls = []
    original = rdms_module.calc_rdm

    def counting(*args, **kwargs):
        calls.append(kwargs.get("descriptors") or args[3])
        return original(*args, **kwargs)

    monkeypatch.setattr(rdms_module, "calc_rdm", counting)
    out = tmp_path / "rsa.nc"
    assert main(["rsa", str(acts), "--brain", str(brain), "--n-boot", "40", "--seed", "3",
                 "--test", "bootstrap", "--out", str(out)]) == 0
    assert len(calls) == 3  # one RDM per layer, shared by the RSA and the layer tests
    ds = xr.load_dataset(out)
    assert {"ci_lo", "ci_hi", "diff_difference", "diff_p_value"} <= set(ds.data_vars)
    assert ds.attrs["n_boot"] == 40 and ds.attrs["seed"] == 3
    mean = ds["mean"].values
    np.testing.assert_allclose(ds.diff_difference.values, mean[:, None] - mean[None, :], atol=1e-12)
    printed = capsys.readouterr().out
    assert "layer A vs layer B (bootstrap)" in printed and "block0 − block2" in printed


def test_old_flags_are_gone(files):
    acts, brain, _, _ = files
    for argv in (["rsa", str(acts), "--bootstrap", "5"], ["decorrelation", str(acts), "--bootstrap", "5"],
                 ["compare-models", str(acts), "--method", "cka"]):
        with pytest.raises(SystemExit):
            main(argv)


def test_compare_models_takes_compare(files, tmp_path):
    acts, _, model, _ = files
    assert main(["compare-models", str(acts), "--compare", "spearman", "--out", str(tmp_path / "r.nc")]) == 0
    rsa = xr.load_dataset(tmp_path / "r.nc")["similarity"]
    assert rsa.attrs["compare_method"] == "spearman"
    assert float(rsa.sel(layer_a="block1", layer_b="block2")) == pytest.approx(
        _spearman(model["block1"], model["block2"]), abs=1e-6)
    assert main(["compare-models", str(acts), "--compare", "cka", "--out", str(tmp_path / "c.nc")]) == 0
    cka = xr.load_dataset(tmp_path / "c.nc")["cka"]
    np.testing.assert_allclose(np.diag(cka.values), 1.0, atol=1e-6)


def test_partition_of_one_model_is_its_r2(files, tmp_path):
    acts, brain, model, vectors = files
    out = tmp_path / "part.nc"
    assert main(["partition", f"{acts}:block2", "--brain", str(brain), "--out", str(out)]) == 0
    ds = xr.load_dataset(out)
    y = np.mean([vectors[2 * s : 2 * s + 2].mean(0) for s in range(3)], axis=0)
    r = np.corrcoef(model["block2"], y)[0, 1]
    assert float(ds.total_r2) == pytest.approx(r**2, abs=1e-6)
    assert float(ds.commonality.sel(part="acts:block2")) == pytest.approx(r**2, abs=1e-6)


def test_decorrelation_takes_n_boot(files, tmp_path):
    acts, _, _, _ = files
    out = tmp_path / "dec.nc"
    assert main(["decorrelation", str(acts), "--n-boot", "20", "--seed", "1", "--out", str(out)]) == 0
    ds = xr.load_dataset(out)
    assert (ds.L_lo <= ds.L_hi).all() and ds.sizes["layer"] == 3


@pytest.mark.parametrize("protocol", ["focusmim", "standardized-accuracy", "logistic-lbfgs"])
def test_probe_protocol_reaches_the_probe(tmp_path, protocol):
    """`neuroalign probe --protocol P` gives LinearProbe(protocol=P)'s accuracy on the same data."""
    from neuroalign.analysis.probes import LinearProbe

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 20)) * 3
    arrays, paths = {}, {}
    for split, n in (("train", 120), ("test", 60)):
        labels = np.repeat(np.arange(3), n // 3)
        # a large offset and scale: standardising or not changes the fit
        x = (centres[labels] + rng.normal(size=(n, 20))) * 50 + 400
        arrays[split] = (x.astype(np.float32), labels)
        paths[split] = tmp_path / f"{split}.nc"
        ids = np.array([f"{split}{i:03d}" for i in range(n)])
        with ActivationWriter(paths[split]) as writer:
            writer.write_batch({"fc": x.astype(np.float32)}, ids, {"label": labels})
    out = tmp_path / "probe.nc"
    assert main(["probe", str(paths["train"]), str(paths["test"]), "--protocol", protocol,
                 "--device", "cpu", "--out", str(out)]) == 0
    ds = xr.load_dataset(out)
    probe = LinearProbe(protocol=protocol, device="cpu", seed=0).fit(*arrays["train"])
    assert float(ds["accuracy_mean"].sel(layer="fc")) == pytest.approx(probe.score(*arrays["test"]))
    if protocol == "logistic-lbfgs":  # --C reaches the probe too
        strong = tmp_path / "strong.nc"
        assert main(["probe", str(paths["train"]), str(paths["test"]), "--protocol", protocol,
                     "--C", "1e-4", "--device", "cpu", "--out", str(strong)]) == 0
        ds = xr.load_dataset(strong)
        assert ds.attrs["C"] == 1e-4
        probe = LinearProbe(protocol=protocol, C=1e-4, device="cpu").fit(*arrays["train"])
        assert float(ds["accuracy_mean"].sel(layer="fc")) == pytest.approx(
            probe.score(*arrays["test"]))
    else:
        assert main(["probe", str(paths["train"]), str(paths["test"]), "--protocol", protocol,
                     "--C", "1"]) != 0
