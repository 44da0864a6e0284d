"""The FocusMIM study scripts of analyses/: each ``--quick`` form end to end on real CIFAR-10.

One module-scoped fixture runs the four studies into one shared run cache (the studies share
their common conditions through it), so every condition is pretrained once. The numbers are
checked against independent recomputations: decorrelation L from a snapshot's latents by a
plain D × D computation, readout accuracies by refitting the probe on the written inputs.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

ANALYSES = Path(__file__).resolve().parents[2] / "analyses"

pytestmark = [pytest.mark.slow, pytest.mark.shared_data("cifar10_jpeg.tar.gz")]


def _study(name: str):
    if str(ANALYSES) not in sys.path:
        sys.path.insert(0, str(ANALYSES))
    return importlib.import_module(name)


def _run_files(runs: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in runs.rglob("*.pt")}


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    out = tmp_path_factory.mktemp("studies")
    common = ["--quick", "--out", str(out), "--runs", str(runs)]
    _study("masking_strategies").main(common)
    after_masking = _run_files(runs)
    for name in ("augmentation_blur", "eye_movements", "decorrelation_emerges"):
        _study(name).main(common)
    return {"out": out, "runs": runs, "after_masking": after_masking, "common": common}


def _table(studies, name: str) -> xr.Dataset:
    path = studies["out"] / f"{name}.nc"
    assert path.is_file() and (studies["out"] / f"{name}.png").stat().st_size > 0
    with xr.open_dataset(path) as ds:
        return ds.load()


@pytest.mark.parametrize("name, conditions", [
    ("masking_strategies", ["periphery", "patches", "fovea", "autoencoder", "raw_pixels"]),
    ("augmentation_blur", ["periphery", "periphery_nocrop", "periphery_blur", "patches",
                           "patches_nocrop", "patches_blur"]),
    ("eye_movements", ["centre", "uniform", "saccades", "next_fixation"]),
])
def test_condition_tables(studies, name, conditions):
    table = _table(studies, name)
    assert list(table.condition.values) == conditions
    assert table["accuracy"].dims == ("condition", "seed") and list(table.seed.values) == [0]
    acc = table["accuracy"].values
    assert np.all((acc >= 0) & (acc <= 1))
    # 10 classes × 10 test images a class at --quick: accuracies are multiples of 1 %
    np.testing.assert_allclose(acc * 100, np.round(acc * 100), atol=1e-9)
    np.testing.assert_allclose(table["accuracy_mean"], acc.mean(axis=1))
    assert np.all(table["decorrelation_L"].values > 0)
    pr = table["participation_ratio"].values
    assert np.all((pr >= 1) & (pr <= 100))  # at most the 100 held-out images
    dead = table["constant_units"].values
    assert np.all((dead >= 0) & (dead < 3072)) and np.all(dead == np.round(dead))
    # the paper's STL-10 numbers of DESIGN.md §4, where it lists the condition
    paper = {"periphery": 0.680, "centre": 0.680, "patches": 0.704, "fovea": 0.500,
             "autoencoder": 0.470, "raw_pixels": 0.359, "periphery_nocrop": 0.566,
             "periphery_blur": 0.489, "patches_blur": 0.565}
    for condition in conditions:
        expected = paper.get(condition, np.nan)
        np.testing.assert_allclose(table["paper_stl10_accuracy"].sel(condition=condition),
                                   expected)


def test_paper_orderings_follow_the_numbers(studies):
    table = _table(studies, "masking_strategies")
    lines = table.attrs["paper_orderings"].split("\n")
    assert len(lines) == 10  # every pair of the 5 conditions: the paper orders them all
    for line in lines:
        a, b = re.match(r"paper (\w+) [\d.]+ > (\w+) [\d.]+;", line).groups()
        diff = float(table.accuracy_mean.sel(condition=a) - table.accuracy_mean.sel(condition=b))
        assert line.endswith("holds" if diff > 0 else "reversed" if diff < 0 else "tie"), line


def test_studies_share_runs_and_rerun_skips_them(studies, capsys):
    runs = studies["runs"]
    # 4 masking + 4 new augmentation + 3 new eye-movement conditions: each trained once
    assert len(list(runs.glob("*_seed0_6steps_*"))) == 11
    eye = _table(studies, "eye_movements")
    masking = _table(studies, "masking_strategies")
    assert (eye.run.sel(condition="centre", seed=0).item()
            == masking.run.sel(condition="periphery", seed=0).item())
    # later studies did not touch the masking runs; a rerun trains nothing
    before = _run_files(runs)
    assert all(before[p] == t for p, t in studies["after_masking"].items())
    _study("decorrelation_emerges").main(studies["common"])  # the masking conditions again
    assert "pretraining: 0 runs trained, 4 found finished" in capsys.readouterr().out
    assert _run_files(runs) == before


def test_decorrelation_table_recomputed_from_a_snapshot(studies):
    from neuroalign.data.cifar import load_cifar10
    from neuroalign.training import load_model

    table = _table(studies, "decorrelation_emerges")
    assert table["decorrelation_L"].dims == ("condition", "seed", "step")
    assert list(table.step.values) == [0, 1, 3, 6]
    assert list(table.condition.values) == ["periphery", "patches", "fovea", "autoencoder"]
    # step 0 is the same initial weights (seed 0) in every condition
    at0 = table["decorrelation_L"].sel(step=0).values
    np.testing.assert_allclose(at0, at0[0, 0], rtol=1e-12)
    # the reference's L (units="all") by the plain D × D computation, from the final snapshot
    run = Path(_table(studies, "masking_strategies").run.sel(condition="patches", seed=0).item())
    model, state = load_model(run / "step_000006.pt")
    assert state["step"] == 6
    images = load_cifar10("test", n_per_class=10, seed=0).images[:100]
    with torch.no_grad():
        x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
        latent = model.forward_encoder(x).reshape(len(x), -1).double().numpy()
    z = (latent - latent.mean(0)) / (latent.std(0, ddof=1) + 1e-5)
    c = z.T @ z / (len(z) - 1)
    expected = ((c**2).sum() - (np.diag(c) ** 2).sum()) / c.shape[0]
    got = float(table["decorrelation_L"].sel(condition="patches", seed=0, step=6))
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    dead = int((latent.max(0) == latent.min(0)).sum())
    assert table["constant_units"].sel(condition="patches", seed=0, step=6) == dead


def test_accuracies_recomputed_from_the_written_inputs(studies):
    from neuroalign import workflows
    from neuroalign.analysis.probes import LinearProbe
    from neuroalign.data.cifar import load_cifar10

    table = _table(studies, "masking_strategies")
    run = Path(table.run.sel(condition="fovea", seed=0).item())
    data = {}
    for split in ("train", "test"):
        path = next((run / "readout").glob(f"{split}_*.nc"))
        (x,) = dict(workflows.iter_layers(path, ["encoder.blocks.8"])).values()
        data[split] = (np.asarray(x), workflows.stimulus_coords(path)["label"].values)
    probe = LinearProbe(protocol="focusmim", seed=0, device="cpu").fit(*data["train"])
    np.testing.assert_allclose(probe.score(*data["test"]),
                               table.accuracy.sel(condition="fovea", seed=0), atol=1e-12)
    # raw pixels: the features built here from the images, channels first in [0, 1]
    pixels = {}
    for split, per_class in (("train", 20), ("test", 10)):
        images = load_cifar10(split, n_per_class=per_class, seed=0)
        x = images.images.transpose(0, 3, 1, 2).reshape(len(images), -1) / np.float32(255)
        pixels[split] = (x.astype(np.float32), images.coords["label"])
    probe = LinearProbe(protocol="focusmim", seed=0, device="cpu").fit(*pixels["train"])
    np.testing.assert_allclose(probe.score(*pixels["test"]),
                               table.accuracy.sel(condition="raw_pixels", seed=0), atol=1e-12)


@pytest.mark.parametrize("stopped_at", [1, 2])  # at a snapshot step: resumed; past one: afresh
def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, stopped_at):
    from neuroalign.training import load_checkpoint, pretrain

    study = _study("_study")
    config = study.condition_config("patches", study.QUICK, seed=1)
    whole, trained = study.pretrained(tmp_path / "a", "patches", config)
    assert trained
    # the same run stopped early (as by Ctrl-C), then picked up by the cache
    folder = study.run_folder(tmp_path / "b", "patches", config)
    pretrain(config, folder, stop_at=stopped_at, progress=False)
    resumed, trained = study.pretrained(tmp_path / "b", "patches", config)
    assert trained and resumed == folder
    for step in study.snapshot_steps(config.steps):
        a = load_checkpoint(study.snapshot_path(whole, step))["model_state"]
        b = load_checkpoint(study.snapshot_path(resumed, step))["model_state"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), step
    assert study.pretrained(tmp_path / "b", "patches", config) == (resumed, False)
