"""The study script ``analyses/video_streams.py --quick``: synthetic clips and brain, random
models, RSA per stream and unique variance per stream, written as netCDF and figures.

A pipeline sanity check: the planted answer (motion energy drives the "dorsal" voxels, static
shape the "ventral" ones) must come out of the partitioning, the RSA numbers must be what a
plain computation from the written files gives, and the invariants must hold."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from scipy.stats import spearmanr

from neuroalign.activations import layer_activation, open_activations

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    pytest.importorskip("av")
    pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("video_streams")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    run = subprocess.run([sys.executable, str(ROOT / "analyses" / "video_streams.py"), "--quick",
                          "--out", str(out)], env=env, capture_output=True, text=True, cwd=ROOT,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return out, run.stdout


def test_quick_writes_rsa_per_stream_with_ceilings_and_figures(study):
    out, stdout = study
    for model in ("flow", "videomae", "r3d"):
        path = out / f"rsa_clip_responses_{model}.nc"
        assert (out / f"rsa_clip_responses_{model}.png").is_file()
        assert (out / f"rsa_clip_responses_{model}.svg").is_file()
        with xr.open_dataset(path) as ds:
            assert list(ds["stream"].values) == ["dorsal", "ventral", "lateral"]
            assert ds["similarity"].dims == ("stream", "layer", "subject")
            assert ds.sizes["layer"] == 4 and ds.sizes["subject"] == 4
            sim = ds["similarity"].values
            assert np.isfinite(sim).all() and (np.abs(sim) <= 1).all()
            lower, upper = ds["noise_ceiling_lower"].values, ds["noise_ceiling_upper"].values
            assert np.isfinite(lower).all() and (lower <= upper).all() and (upper <= 1).all()
            np.testing.assert_allclose(ds["mean"].values, sim.mean(axis=-1), atol=1e-12)
            # the synthetic subjects share most of their voxel weights: reliable RDMs
            assert (lower > 0.5).all()
    assert "noise ceiling" in stdout


def test_an_rsa_number_equals_a_plain_computation_from_the_files(study):
    out, _ = study
    with open_activations(out / "activations" / "r3d.nc", chunks=None) as tree:
        acts = layer_activation(tree, "layer2").load()
    assert acts.dims[:2] == ("presentation", "time")  # time kept, treated as features
    model = acts.values.reshape(acts.sizes["presentation"], -1).astype(np.float64)
    model_ids = acts["stimulus_id"].values.astype(str)
    with xr.open_dataset(out / "quick-data" / "clip_responses.nc") as f:
        brain = f[next(iter(f.data_vars))].load()
    keep = (brain["subject"].values == "sub-2") & (brain["stream"].values == "dorsal")
    patterns = np.nanmean(brain.values[:, keep, :], axis=-1)  # the repetitions averaged
    order = {s: i for i, s in enumerate(brain["stimulus_id"].values.astype(str))}
    patterns = patterns[[order[s] for s in model_ids]]
    upper = np.triu_indices(len(model_ids), k=1)
    expected = spearmanr((1 - np.corrcoef(model))[upper],
                         (1 - np.corrcoef(patterns))[upper]).statistic
    with xr.open_dataset(out / "rsa_clip_responses_r3d.nc") as ds:
        got = float(ds["similarity"].sel(stream="dorsal", layer="layer2", subject="sub-2"))
    assert got == pytest.approx(expected, abs=1e-5)


def test_unique_variance_recovers_the_planted_streams(study):
    out, _ = study
    stem = out / "partition_movie_motion-energy-vs-static-energy"
    assert Path(f"{stem}.png").is_file()
    with xr.open_dataset(f"{stem}.nc") as per_voxel, xr.open_dataset(f"{stem}_by_stream.nc") as s:
        unique = per_voxel["r2_unique"]
        np.testing.assert_allclose(per_voxel["r2_shared"].values,
                                   per_voxel["r2_joint"].values - unique.values.sum(axis=0),
                                   atol=1e-12)
        dorsal = per_voxel["stream"].values == "dorsal"
        np.testing.assert_allclose(
            float(s["r2_unique"].sel(stream="dorsal", space="motion-energy")),
            np.median(unique.sel(space="motion-energy").values[dorsal]), atol=1e-12)
        motion, static = s["r2_unique"].sel(space="motion-energy"), s["r2_unique"].sel(space="static-energy")
        assert float(motion.sel(stream="dorsal")) > float(motion.sel(stream="ventral")) + 0.01
        assert float(static.sel(stream="ventral")) > float(static.sel(stream="dorsal")) + 0.05
    # the random-weight model families: the same code, numbers finite (no finding expected)
    with xr.open_dataset(out / "partition_movie_flow-vs-videomae.nc") as ds:
        assert list(ds["space"].values) == ["flow", "videomae"]
        assert np.isfinite(ds["r2_unique"].values).all()
        assert "sanity check" in ds.attrs["comment"]


def _script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("video_streams", ROOT / "analyses" / "video_streams.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("video_streams", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_model_choices_and_bad_inputs_give_clear_errors(tmp_path):
    script = _script()
    choice = script.parse_model("flow=torchvision:raft_small+resnet18@cnn.layer1,cnn.layer4")
    assert (choice.name, choice.spec, choice.layers) == (
        "flow", "torchvision:raft_small+resnet18", ["cnn.layer1", "cnn.layer4"])
    assert script.parse_model("m=hf:/models/videomae").layers is None
    for bad in ("torchvision:r3d_18", "=torchvision:r3d_18", "r3d=torchvision:r3d_18@"):
        with pytest.raises(ValueError, match="NAME=SPEC|no layers"):
            script.parse_model(bad)
    from neuroalign.data.assemblies import make_assembly, write_assembly

    path = write_assembly(make_assembly(np.random.default_rng(0).standard_normal((4, 3)),
                                        ["a", "b", "c", "d"], region="V1"), tmp_path / "r.nc")
    with pytest.raises(ValueError, match=r"r.nc: no neuroid coordinate 'stream'"):
        script.stream_rdms(path, "stream", "correlation")
    with pytest.raises(SystemExit, match="--partition names \\['dorsal'\\]"):
        script.main(["--clips", str(tmp_path), "--brain", str(path), "--models",
                     "r3d=torchvision:r3d_18", "--partition", "r3d", "dorsal",
                     "--out", str(tmp_path / "o")])
