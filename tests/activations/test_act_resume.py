"""Resuming an interrupted extraction: killed process, injected exception, mismatches."""

import os
import subprocess
import sys
import textwrap

import netCDF4
import numpy as np
import pytest
import torch
from torch import nn

from neuroalign.activations import partial_path
from neuroalign.data.stimuli import StimulusSet
from neuroalign.extraction import extract, image_transform

N, BATCH, LAYERS = 22, 4, ["0", "2", "4"]


def make_stimuli(n=N):
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, size=(n, 24, 24, 3), dtype=np.uint8)
    return StimulusSet(stimulus_id=[f"img{i:03d}" for i in range(n)], images=images,
                       coords={"label": np.arange(n) % 5}, name="toy")


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.Flatten(),
                         nn.Linear(8 * 8 * 8, 6))


class FailAfter(nn.Sequential):
    """The model of make_model(); the forward pass number ``k + 1`` raises (or kills the
    process)."""

    def __init__(self, model, k, kill=False):
        super().__init__(*model)
        self.k, self.kill, self.calls = k, kill, 0

    def forward(self, x):
        self.calls += 1
        if self.calls > self.k:
            if self.kill:
                import signal
                import time

                time.sleep(1.0)  # let the writer thread finish the batch before
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("interrupted")
        return super().forward(x)


OPTIONS = dict(transform=image_transform(16), batch_size=BATCH, progress=False,
               mask={"strategy": "patches", "ratio": 0.5}, projection="random", n_components=5,
               attrs={"model": "toy"})


def contents(path):
    with netCDF4.Dataset(path) as ds:
        out = {"ids": list(ds["stimulus_id"][:]), "label": ds["label"][:].tolist()}
        attrs = {k: ds.getncattr(k) for k in ds.ncattrs()}
        for layer in LAYERS:
            out[layer] = np.asarray(ds[f"{layer}/activation"][:])
            if "projection" in ds[layer].variables:
                out[layer + "/projection"] = np.asarray(ds[f"{layer}/projection"][:])
    for key in ("created", "resumed_from", "presentations_complete"):
        attrs.pop(key, None)
    return out, attrs


def assert_same_file(a, b):
    (ca, aa), (cb, ab) = contents(a), contents(b)
    assert aa == ab
    assert ca.keys() == cb.keys()
    for key in ca:
        np.testing.assert_array_equal(ca[key], cb[key], err_msg=key)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "ref.nc"
    return extract(FailAfter(make_model(), 10**6), make_stimuli(), LAYERS, path, **OPTIONS)


def test_resume_after_exception(tmp_path, reference):
    out = tmp_path / "acts.nc"
    with pytest.raises(RuntimeError, match="interrupted"):
        extract(FailAfter(make_model(), 3), make_stimuli(), LAYERS, out, **OPTIONS)
    assert partial_path(out).exists() and not out.exists()
    with netCDF4.Dataset(partial_path(out)) as ds:
        assert ds.getncattr("presentations_complete") == 3 * BATCH
    model = FailAfter(make_model(), 10**6)
    extract(model, make_stimuli(), LAYERS, out, resume=True, **OPTIONS)
    assert model.calls == -(-N // BATCH) - 3  # only the missing batches ran
    assert out.exists() and not partial_path(out).exists()
    assert_same_file(out, reference)
    with netCDF4.Dataset(out) as ds:
        assert ds.getncattr("resumed_from") == 3 * BATCH
    # resuming a finished file with the same settings returns it untouched
    before = out.stat().st_mtime_ns
    extract(make_model(), make_stimuli(), LAYERS, out, resume=True, **OPTIONS)
    assert out.stat().st_mtime_ns == before


def test_kill_and_resume(tmp_path, reference):
    out = tmp_path / "killed.nc"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(os.path.dirname(__file__))!r})
        import importlib.util
        spec = importlib.util.spec_from_file_location("resume_helpers", {__file__!r})
        helpers = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(helpers)
        from neuroalign.extraction import extract
        model = helpers.FailAfter(helpers.make_model(), 2, kill=True)
        extract(model, helpers.make_stimuli(), helpers.LAYERS, {str(out)!r}, **helpers.OPTIONS)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert partial_path(out).exists() and not out.exists()
    extract(make_model(), make_stimuli(), LAYERS, out, resume=True, **OPTIONS)
    assert_same_file(out, reference)
    with netCDF4.Dataset(out) as ds:
        assert ds.getncattr("resumed_from") == 2 * BATCH


def interrupted(tmp_path, **options):
    out = tmp_path / "acts.nc"
    with pytest.raises(RuntimeError):
        extract(FailAfter(make_model(), 2), make_stimuli(), LAYERS, out, **{**OPTIONS, **options})
    return out


def test_resume_with_other_stimuli_is_an_error(tmp_path):
    out = interrupted(tmp_path)
    stimuli = make_stimuli()
    shuffled = stimuli.subset(np.r_[1, 0, 2:N])
    with pytest.raises(ValueError, match=r"first 8 of the stimulus set.*stimulus 0 is 'img000'.*'img001'"):
        extract(make_model(), shuffled, LAYERS, out, resume=True, **OPTIONS)
    assert partial_path(out).exists()  # nothing lost


def test_resume_with_other_settings_is_an_error(tmp_path):
    out = interrupted(tmp_path)
    with pytest.raises(ValueError, match=r"other settings \(.*n_components: file 5, now 4"):
        extract(make_model(), make_stimuli(), LAYERS, out, resume=True,
                **{**OPTIONS, "n_components": 4})
    with pytest.raises(ValueError, match=r"other settings \(layers: file \['0', '2', '4'\], now \['0', '2'\]\)"):
        extract(make_model(), make_stimuli(), ["0", "2"], out, resume=True, **OPTIONS)
    # without resume the partial file is an error; with overwrite it is discarded
    with pytest.raises(FileExistsError, match=r"acts\.nc\.partial .*--resume.*--overwrite"):
        extract(make_model(), make_stimuli(), ["0"], out, **OPTIONS)
    path = extract(make_model(), make_stimuli(), ["0"], out, overwrite=True, **OPTIONS)
    with netCDF4.Dataset(path) as ds:
        assert ds.getncattr("layers") == "0"


def test_damaged_partial_file_is_a_clear_error(tmp_path):
    out = interrupted(tmp_path)
    data = partial_path(out).read_bytes()
    partial_path(out).write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=r"cannot be opened.*--overwrite"):
        extract(make_model(), make_stimuli(), LAYERS, out, resume=True, **OPTIONS)


def test_cli_extract_options_and_resume(tmp_path, capsys):
    from PIL import Image

    from neuroalign.cli import main
    from neuroalign.models import create_model
    from neuroalign.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    config = {"model": "conv_mae_tiny", "model_kwargs": {}, "seed": 0, "image_size": 16,
              "masking": "periphery", "mask_ratio": 0.8, "fill": "mean"}
    ckpt = save_checkpoint(tmp_path / "c.pt", model=create_model("conv_mae_tiny"),
                           optimizer=None, config=config, step=5)
    folder = tmp_path / "stimuli"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "acts.nc"
    args = ["extract", str(ckpt), "--stimuli", str(folder), "--out", str(out), "--batch-size", "4",
            "--device", "cpu", "--projection", "random", "--n-components", "5",
            "--mask", "patches:0.5:grey", "--seed", "3", "--compression", "none"]
    assert main(args) == 0
    with netCDF4.Dataset(out) as ds:
        assert ds.getncattr("input_mask") == "patches ratio=0.5 fill=grey"
        assert ds.getncattr("projection") == "random" and ds.getncattr("projection_seed") == 3
        assert ds["encoder/blocks/0/activation"].shape == (6, 5)
        assert not ds["encoder/blocks/0/activation"].filters()["zlib"]
    before = out.stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 2  # neither --resume nor --overwrite
    assert "acts.nc exists: --resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0  # finished, same settings: kept as it is
    assert out.stat().st_mtime_ns == before
    capsys.readouterr()
    assert main([*("4" if a == "5" else a for a in args), "--resume"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_resume_with_another_batch_size(tmp_path, reference):
    """Resumed batches that do not start on a chunk boundary go through HDF5's own filters."""
    out = tmp_path / "acts.nc"
    with pytest.raises(RuntimeError, match="interrupted"):
        extract(FailAfter(make_model(), 3), make_stimuli(), LAYERS, out, **OPTIONS)
    extract(make_model(), make_stimuli(), LAYERS, out, resume=True,
            **{**OPTIONS, "batch_size": 5})
    (ours, our_attrs), (ref, ref_attrs) = contents(out), contents(reference)
    assert our_attrs == ref_attrs and ours.keys() == ref.keys()
    assert ours.pop("ids") == ref.pop("ids")
    for key in ours:  # the linear layer's sums round differently in batches of 5
        np.testing.assert_allclose(ours[key], ref[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_existing_output_needs_resume_or_overwrite(tmp_path, reference, capsys):
    out = tmp_path / "acts.nc"
    out.write_bytes(reference.read_bytes())
    before = out.read_bytes()
    with pytest.raises(FileExistsError, match=r"acts\.nc exists: --resume .* --overwrite"):
        extract(make_model(), make_stimuli(), LAYERS, out, **OPTIONS)
    with pytest.raises(ValueError, match="exclude each other"):
        extract(make_model(), make_stimuli(), LAYERS, out, resume=True, overwrite=True, **OPTIONS)
    assert out.read_bytes() == before
    extract(make_model(), make_stimuli(), ["0"], out, overwrite=True, **OPTIONS)
    with netCDF4.Dataset(out) as ds:
        assert ds.getncattr("layers") == "0"
