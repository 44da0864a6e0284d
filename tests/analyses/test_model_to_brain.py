"""analyses/model_to_brain.py --quick end to end on the real brain data, its numbers recomputed
from the written netCDF files with numpy and scipy (not through neuroalign's RSA code)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import xarray as xr

ANALYSES = Path(__file__).resolve().parents[2] / "analyses"

pytestmark = [pytest.mark.slow, pytest.mark.shared_data(
    "cifar10_jpeg.tar.gz", "kriegeskorte92", "cichy92", "cowley_v4")]


def _module():
    if str(ANALYSES) not in sys.path:
        sys.path.insert(0, str(ANALYSES))
    return importlib.import_module("model_to_brain")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("brain")
    argv = ["--quick", "--out", str(out), "--n-boot", "10"]
    result = _module().main(argv)
    return {"out": out, "argv": argv, **result}


def _layer(path: Path, layer: str) -> tuple[np.ndarray, np.ndarray]:
    from neuroalign import workflows

    x = dict(workflows.iter_layers(path, [layer]))[layer]
    return np.asarray(x, np.float64), workflows.stimulus_coords(path)["stimulus_id"].values


def _correlation_rdm(x: np.ndarray) -> np.ndarray:
    return 1 - np.corrcoef(x)


def _upper(matrix: np.ndarray) -> np.ndarray:
    return matrix[np.triu_indices(len(matrix), k=1)]


def test_every_model_and_region_written(study):
    out = study["out"]
    models = ["periphery", "patches", "fovea", "autoencoder", "untrained", "resnet18"]
    for region in ("hit", "cichy-evc", "cichy-it"):
        assert (out / f"rsa_{region}.png").stat().st_size > 0
        assert (out / f"partition_{region}.png").stat().st_size > 0
        for model in models:
            assert (out / "results" / "rsa" / model / f"{region}.nc").is_file()
    for name in ("encoding_v4.png", "model_similarity.png", "summary.png", "results.nc"):
        assert (out / name).stat().st_size > 0
    with xr.open_dataset(out / "results.nc") as merged:
        assert set(merged.model.values) == set(models)
        assert {"hit", "cichy-evc", "cichy-it", "v4"} <= set(merged.brain.values)


def test_rsa_recomputed_from_the_files(study):
    """Kriegeskorte hIT, periphery's latent: a Pearson-correlation RDM of the written
    activations, Spearman with each subject's RDM (its two sessions averaged; matched by
    stimulus id), the mean over the 4 subjects."""
    from neuroalign.data.registry import load_brain_rdms

    out = study["out"]
    with xr.open_dataset(out / "results" / "rsa" / "periphery" / "hit.nc") as ds:
        ds = ds.load()
    layer = str(ds.layer.values[-1])
    x, ids = _layer(out / "activations" / "periphery" / "kriegeskorte92.nc", layer)
    model = _correlation_rdm(x)
    brain, subject = load_brain_rdms("kriegeskorte-hit")
    brain_ids = list(brain.pattern_descriptors["stimulus_id"])
    order = [list(ids).index(i) for i in brain_ids]
    model_vec = _upper(model[np.ix_(order, order)])
    subjects = np.asarray(brain.rdm_descriptors[subject])
    matrices = brain.get_matrices()
    rhos = [scipy.stats.spearmanr(model_vec, _upper(matrices[subjects == s].mean(axis=0))).statistic
            for s in np.unique(subjects)]  # each subject's sessions averaged first
    # the RDM keeps 1e-6 of a float64 one; Spearman ranks of near-tied dissimilarities may swap
    assert float(ds["mean"].sel(layer=layer)) == pytest.approx(np.mean(rhos), abs=5e-5)
    assert np.all(ds["ci_lo"].values <= ds["ci_hi"].values)
    peaks = xr.open_dataset(out / "rsa_peaks.nc").load()
    assert float(peaks.peak.sel(model="periphery", region="hit")) == pytest.approx(
        float(ds["mean"].max()))


def test_partitioning_recomputed(study):
    """The full R² of the masked and unmasked models' last layers on the pooled Cichy IT RDM
    (each subject's sessions averaged, then the subjects) is a plain least-squares fit's, and
    the parts sum to it."""
    from neuroalign.analysis.rsa import pool_subjects
    from neuroalign.data.registry import load_brain_rdms

    out = study["out"]
    ds = xr.open_dataset(out / "partition_cichy-it.nc").load()
    assert float(ds.commonality.sum()) == pytest.approx(float(ds.total_r2), abs=1e-9)
    rdms, subject = load_brain_rdms("cichy-it")
    pooled = pool_subjects(rdms, subject, "rdms").rdms
    y_ids = list(pooled.pattern_descriptors["stimulus_id"])
    y = pooled.get_vectors().mean(axis=0)
    columns = []
    for model in ("periphery", "autoencoder"):
        with xr.open_dataset(out / "results" / "rsa" / model / "cichy-it.nc") as r:
            layer = str(r.layer.values[-1])
        x, ids = _layer(out / "activations" / model / "cichy92.nc", layer)
        order = [list(ids).index(i) for i in y_ids]
        columns.append(_upper(_correlation_rdm(x)[np.ix_(order, order)]))
    design = np.column_stack([np.ones_like(y), *columns])
    fitted = design @ np.linalg.lstsq(design, y, rcond=None)[0]
    r2 = 1 - np.sum((y - fitted) ** 2) / np.sum((y - y.mean()) ** 2)
    assert float(ds.total_r2) == pytest.approx(r2, abs=5e-5)  # float32 RDMs: 1e-6 each


def test_model_similarity_recomputed(study):
    out = study["out"]
    sim = xr.open_dataset(out / "model_similarity.nc").load()["similarity"]
    a, b = str(sim.layer_a.values[0]), str(sim.layer_b.values[-1])
    xa, ids_a = _layer(out / "activations" / "periphery" / "kriegeskorte92.nc", a)
    xb, ids_b = _layer(out / "activations" / "autoencoder" / "kriegeskorte92.nc", b)
    assert list(ids_a) == list(ids_b)
    rho = scipy.stats.spearmanr(_upper(_correlation_rdm(xa)), _upper(_correlation_rdm(xb))).statistic
    assert float(sim.sel(layer_a=a, layer_b=b)) == pytest.approx(rho, abs=5e-5)  # near-ties


def test_encoding_scores_and_ceiling(study):
    enc = study["encoding"]
    for model, ds in enc.items():
        assert ds.sizes["neuroid"] == 50, model
        r = ds["r"].values
        assert np.isfinite(r).mean() > 0.9
        assert np.all(np.abs(r[np.isfinite(r)]) <= 1)
    # the random resnet's layers still carry image statistics V4 responds to: some neurons
    # are predicted above chance in some layer
    assert float(enc["resnet18"]["r"].median("neuroid").max()) > 0.05


def test_rerun_skips_finished_work(study):
    out = study["out"]
    files = {p: p.stat().st_mtime_ns for p in (out / "activations").rglob("*.nc")}
    files |= {p: p.stat().st_mtime_ns for p in (out / "results").rglob("*.nc")}
    _module().main(study["argv"])
    assert {p: p.stat().st_mtime_ns for p in files} == files


@pytest.mark.parametrize("text", ["noname", "=torchvision:resnet18", "a=", "a=spec@"])
def test_model_entry_errors(text):
    with pytest.raises(ValueError, match="NAME=SPEC|no layers"):
        _module().model_entry(text)


def test_model_entry():
    assert _module().model_entry("mae=timm:vit_base_patch16_224.mae@blocks.*,norm") == {
        "name": "mae", "spec": "timm:vit_base_patch16_224.mae", "layers": ["blocks.*", "norm"]}
