"""Sharded extraction under torchrun (gloo, CPU): the shards read through their manifest, and
merged, equal the single-process file value for value and id for id; a rank killed and rerun
with --resume gives the same; missing, unfinished and foreign shards are clear errors."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import neuroalign
from neuroalign.activations import (
    ActivationFileError,
    layer_names,
    manifest_path,
    merge_shards,
    open_activations,
    partial_path,
    shard_path,
)
from neuroalign.activations.shards import batch_shares
from neuroalign.cli import main
from neuroalign.data.stimuli import StimulusSet
from neuroalign.extraction import extract, image_transform
from neuroalign.training.distributed import free_port, spawn_local

N, BATCH = 20, 4  # 5 batches: rank 0 takes 3 (12 stimuli), rank 1 takes 2 (8)
WORKTREE = os.path.dirname(os.path.dirname(neuroalign.__file__))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """20 of the 92 images of Kriegeskorte et al. (2008), as PNG files."""
    from neuroalign.data.stimulus_sets import load_kriegeskorte92

    stimuli = load_kriegeskorte92()
    folder = tmp_path_factory.mktemp("k92")
    for i in range(0, 4 * N, 4):
        name = str(stimuli.stimulus_id[i]).split("/")[1]
        Image.fromarray(stimuli.images[i]).save(folder / f"{name}.png")
    return folder


def cli_args(folder, out):
    return ["extract", "torchvision/resnet18", "--stimuli", str(folder), "--out", str(out),
            "--image-size", "32", "--batch-size", str(BATCH), "--device", "auto", "--seed", "0",
            "--layers", "layer1.0.conv1", "layer2.*", "fc", "--projection", "random",
            "--n-components", "6", "--mask", "patches:0.5:noise", "--compression-threads", "1"]


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "acts.nc"
    assert main(cli_args(images, out)) == 0
    return out


def torchrun(args, nproc=2, script=None) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node nproc -m neuroalign ARGS`` (or a script) in a subprocess."""
    env = {**os.environ, "PYTHONPATH": WORKTREE, "OMP_NUM_THREADS": "1"}
    target = [str(script)] if script else ["-m", "neuroalign"]
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
         "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *target, *args],
        capture_output=True, text=True, timeout=300, env=env)


def assert_trees_equal(manifest, single):
    """Every layer's values, the ids, the coordinates and the root attributes."""
    a, b = open_activations(single), open_activations(manifest)
    try:
        assert layer_names(a) == layer_names(b) == ["layer1.0.conv1", "layer2.0", "layer2.1", "fc"]
        volatile = {"created", "device", "torch_version"}
        assert {k: v for k, v in a.attrs.items() if k not in volatile} == \
            {k: v for k, v in b.attrs.items() if k not in volatile}
        assert list(a.coords) == list(b.coords) == ["stimulus_id", "image_path"]
        for name in a.coords:
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
        assert len(b["stimulus_id"]) == N
        for layer in layer_names(a):
            node = layer.replace(".", "/")
            x, y = a[node].to_dataset(inherit=False), b[node].to_dataset(inherit=False)
            assert y["activation"].chunks is not None  # lazy: dask over the shards
            assert list(x.data_vars) == list(y.data_vars)  # activation, projection
            for var in x.data_vars:
                assert x[var].dims == y[var].dims
                np.testing.assert_array_equal(x[var].values, y[var].values,
                                              err_msg=f"{layer}/{var}")
            assert np.abs(x["activation"].values).max() > 0  # real values were compared
            assert x.attrs == y.attrs
    finally:
        a.close()
        b.close()


def test_torchrun_shards_equal_the_single_process_file(images, reference, tmp_path,
                                                       same_contents):
    out = tmp_path / "acts.nc"
    proc = torchrun(cli_args(images, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("activations:") == 1  # rank 0 alone says where
    assert not out.exists()
    manifest = json.loads(manifest_path(out).read_text())
    assert [(s["file"], s["start"], s["stop"]) for s in manifest["shards"]] == [
        ("acts.shard-00-of-02.nc", 0, 12), ("acts.shard-01-of-02.nc", 12, 20)]
    assert manifest["n_stimuli"] == N and manifest["batch_size"] == BATCH
    assert manifest["weights_sha256"] == open_activations(reference).attrs["weights_sha256"]
    assert "--resume" in manifest["command"] and "--nproc_per_node 2" in manifest["command"]
    shard = open_activations(shard_path(out, 1, 2))
    assert len(shard["stimulus_id"]) == 8 and shard.attrs["shard_start"] == 12
    shard.close()
    assert_trees_equal(manifest_path(out), reference)

    # one file again: through the writer, as the single process wrote it
    merged = tmp_path / "merged.nc"
    assert main(["merge", str(manifest_path(out)), "--out", str(merged)]) == 0
    same_contents(merged, reference)
    assert os.path.getsize(merged) == os.path.getsize(reference)  # same codec and chunks
    assert main(["merge", str(manifest_path(out)), "--out", str(merged)]) == 2  # exists

    # an analysis taking a file path takes the manifest
    from neuroalign.workflows import (
        decorrelation_from_file,
        model_similarity_from_files,
        stimulus_coords,
    )

    d_one, d_shards = decorrelation_from_file(reference), decorrelation_from_file(manifest_path(out))
    for var in d_one.data_vars:
        np.testing.assert_array_equal(d_one[var].values, d_shards[var].values, err_msg=var)
    assert stimulus_coords(manifest_path(out)).equals(stimulus_coords(reference))
    cka_one = model_similarity_from_files(reference, compare_method="cka")
    cka_shards = model_similarity_from_files(manifest_path(out), compare_method="cka")
    np.testing.assert_allclose(cka_shards.values, cka_one.values, rtol=1e-12)
    assert cka_one.shape == (4, 4) and np.ptp(cka_one.values) > 0.01


KILL = """
import os, signal, sys, time
from pathlib import Path
import neuroalign.__main__ as entry
from neuroalign.extraction import hooks
from neuroalign.cli import main

features, calls = hooks.Runner.features, [0]
manifest = Path({manifest!r})

def killing(self, x):
    calls[0] += 1
    if os.environ["RANK"] == "1" and calls[0] == 2:  # rank 1, its second batch
        for _ in range(600):  # rank 0 has written the manifest (before its first batch)
            if manifest.exists():
                break
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGKILL)
    return features(self, x)

hooks.Runner.features = killing
sys.argv[0] = entry.__file__  # as `-m neuroalign`, for the command in the manifest
sys.exit(main(sys.argv[1:]))
"""


def test_rank_killed_then_resumed_gives_the_same(images, reference, tmp_path):
    out = tmp_path / "acts.nc"
    script = tmp_path / "kill_rank1.py"
    script.write_text(textwrap.dedent(KILL.format(manifest=str(manifest_path(out)))))
    proc = torchrun(cli_args(images, out), script=script)
    assert proc.returncode != 0
    shard1 = shard_path(out, 1, 2)
    assert partial_path(shard1).exists() and not shard1.exists(), proc.stderr[-3000:]
    with pytest.raises(ActivationFileError, match=(
            r"Shard 1 of 2 \(.*acts.shard-01-of-02.nc\) is incomplete: only "
            r"acts.shard-01-of-02.nc.partial exists, with 4 of its 8 stimuli; finish it with: "
            r"torchrun --nnodes 1 --nproc_per_node 2 -m neuroalign extract .* --resume")):
        open_activations(manifest_path(out))
    again = torchrun([*cli_args(images, out), "--resume"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert not partial_path(shard1).exists()
    resumed = open_activations(shard1)
    assert resumed.attrs["resumed_from"] == 4
    resumed.close()
    assert_trees_equal(manifest_path(out), reference)


# ---------------------------------------------------------------- the Python API (spawn_local)
def extract_resnet(folder, out, **kw):
    """resnet18 with seeded random weights on the folder's images, 32 px (any process)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    return extract(model, StimulusSet.from_folder(folder), ["layer1.0.conv1", "layer4"], out,
                   transform=image_transform(32), batch_size=BATCH, progress=False,
                   compression_threads=1, **kw)


def test_python_extract_under_torchrun_and_its_errors(images, tmp_path):
    single = extract_resnet(images, tmp_path / "single.nc")
    out = tmp_path / "acts.nc"
    # fork: the children inherit the imported modules
    spawn_local(extract_resnet, 2, images, out, start_method="fork")
    manifest = manifest_path(out)
    a, b = open_activations(single), open_activations(manifest)
    for layer in ("layer1.0.conv1", "layer4"):
        np.testing.assert_array_equal(a[layer.replace(".", "/")]["activation"].values,
                                      b[layer.replace(".", "/")]["activation"].values)
    np.testing.assert_array_equal(a["stimulus_id"].values, b["stimulus_id"].values)
    a.close()
    b.close()

    # again without --resume/--overwrite: refused before anything is written
    # (rank 0 refuses the manifest, each rank its shard: whichever comes first)
    with pytest.raises(Exception, match=r"acts\.(manifest\.json \(a sharded extraction\)|"
                       r"shard-0[01]-of-02\.nc) exists: --resume"):
        spawn_local(extract_resnet, 2, images, out, start_method="fork")
    # resumed with other settings: the manifest (rank 0) or a shard says what differs
    with pytest.raises(Exception, match=r"Cannot resume .*acts\.(manifest\.json|shard-0[01]-"
                       r"of-02\.nc): .*dtype: (manifest|file) 'float32', now 'float16'"):
        spawn_local(extract_resnet, 2, images, out, start_method="fork", resume=True,
                    dtype="float16")
    # a shard of another extraction (float16) in place of shard 1
    other = tmp_path / "other" / "acts.nc"
    other.parent.mkdir()
    spawn_local(extract_resnet, 2, images, other, start_method="fork", dtype="float16")
    shard1 = shard_path(out, 1, 2)
    kept = shard1.with_name("kept.nc")
    shard1.rename(kept)
    shutil.copy(shard_path(other, 1, 2), shard1)
    with pytest.raises(ActivationFileError, match=r"Shard 1 of 2 \(.*acts.shard-01-of-02.nc\) "
                       r"was written with other settings than the manifest's \(dtype: file "
                       r"'float16', manifest 'float32'"):
        open_activations(manifest)
    with pytest.raises(ActivationFileError, match="other settings"):
        merge_shards(manifest, tmp_path / "merged.nc", progress=False)
    assert not (tmp_path / "merged.nc").exists() and not partial_path(tmp_path / "merged.nc").exists()
    # a missing shard
    shard1.unlink()
    with pytest.raises(ActivationFileError, match=r"Shard 1 of 2 .* is missing; finish it with"):
        open_activations(manifest)
    with pytest.raises(FileNotFoundError, match=r"A sharded extraction wrote .*acts.manifest.json"):
        open_activations(out)
    kept.rename(shard1)
    open_activations(manifest).close()


def test_more_processes_than_batches(images, tmp_path):
    """8 stimuli, 2 batches, 3 processes: the third extracts nothing, writes no shard, and the
    manifest's tree is the single-process file's."""
    folder = tmp_path / "eight"
    folder.mkdir()
    for path in sorted(images.iterdir())[:8]:
        shutil.copy(path, folder / path.name)
    single = extract_resnet(folder, tmp_path / "single.nc")
    out = tmp_path / "acts.nc"
    spawn_local(extract_resnet, 3, folder, out, start_method="fork")
    manifest = json.loads(manifest_path(out).read_text())
    assert [(s["file"], s["start"], s["stop"]) for s in manifest["shards"]] == [
        ("acts.shard-00-of-03.nc", 0, 4), ("acts.shard-01-of-03.nc", 4, 8), (None, 8, 8)]
    assert not shard_path(out, 2, 3).exists() and not partial_path(shard_path(out, 2, 3)).exists()
    merged = merge_shards(manifest_path(out), tmp_path / "merged.nc", progress=False)
    a, b = open_activations(single), open_activations(merged)
    for layer in ("layer1/0/conv1", "layer4"):
        np.testing.assert_array_equal(a[layer]["activation"].values, b[layer]["activation"].values)
    a.close()
    b.close()


def reference_shares(n, batch_size, count):
    """Plain: split the list of batches into ``count`` runs as np.array_split does."""
    batches = [list(range(s, min(n, s + batch_size))) for s in range(0, n, batch_size)]
    runs = np.array_split(np.arange(len(batches)), count)
    return [(batches[r[0]][0], batches[r[-1]][-1] + 1) if len(r) else (n, n) for r in runs]


@pytest.mark.parametrize("n, batch_size, count", [(20, 4, 2), (73000, 64, 8), (8, 4, 3),
                                                  (1, 64, 4), (100, 7, 6)])
def test_batch_shares(n, batch_size, count):
    shares = batch_shares(n, batch_size, count)
    assert shares == reference_shares(n, batch_size, count)
    sizes = [stop - start for start, stop in shares]
    assert sum(sizes) == n and shares[0][0] == 0 and shares[-1][1] == n
    batches = [-(-size // batch_size) for size in sizes]  # whole batches, the last maybe short
    assert max(batches) - min(batches) <= 1 and batches == sorted(batches, reverse=True)
    assert all(start % batch_size == 0 for start, stop in shares if stop > start)


def test_shard_names():
    assert shard_path("/d/acts.nc", 1, 2).name == "acts.shard-01-of-02.nc"
    assert shard_path("acts.nc", 7, 128).name == "acts.shard-007-of-128.nc"
    assert manifest_path("/d/acts.nc").name == "acts.manifest.json"


def test_pca_is_fitted_alike_on_every_rank(images, tmp_path):
    """PCA is fitted on the whole set's first stimuli by every rank: the shards' projections
    and values are the single process's."""
    folder = tmp_path / "eight"
    folder.mkdir()
    for path in sorted(images.iterdir())[:8]:
        shutil.copy(path, folder / path.name)
    kw = dict(projection="pca", n_components=3, fit_stimuli=6)
    single = extract_resnet(folder, tmp_path / "single.nc", **kw)
    out = tmp_path / "acts.nc"
    spawn_local(extract_resnet, 2, folder, out, start_method="fork", **kw)
    a, b = open_activations(single), open_activations(manifest_path(out))
    s1 = open_activations(shard_path(out, 1, 2))
    assert a.attrs["pca_fit"] == b.attrs["pca_fit"] == "first 6 stimuli of eight"
    for layer in ("layer1/0/conv1", "layer4"):
        for var in ("activation", "projection", "mean", "explained_variance"):
            np.testing.assert_array_equal(a[layer][var].values, b[layer][var].values)
        np.testing.assert_array_equal(s1[layer]["projection"].values, a[layer]["projection"].values)
        assert b[layer]["activation"].shape == (8, 3)
    for tree in (a, b, s1):
        tree.close()


def test_rank_device(monkeypatch):
    from neuroalign.extraction.shards import rank_device

    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setenv("RANK", "7")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert rank_device("auto") == torch.device("cpu")
    assert rank_device("cpu") == "cpu" and rank_device(None) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert rank_device("auto") == rank_device("cuda") == torch.device("cuda", 3)
    assert rank_device("cuda:0") == "cuda:0"  # an explicit device is kept
