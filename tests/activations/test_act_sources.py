"""Stimulus and model sources: torch Datasets, timm models, several checkpoints with an index,
and reading a file without neuroalign."""

import hashlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from neuroalign.activations import layer_activation, open_activation_index, open_activations
from neuroalign.data.stimuli import StimulusSet
from neuroalign.extraction import DatasetStimuli, extract, extract_checkpoints, image_transform

N = 10


@pytest.fixture(scope="module")
def stimuli():
    rng = np.random.default_rng(11)
    images = rng.integers(0, 256, size=(N, 16, 16, 3), dtype=np.uint8)
    return StimulusSet(stimulus_id=[f"s{i}" for i in range(N)], images=images,
                       coords={"label": np.arange(N) % 3}, name="toy")


def conv_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 16 * 16, 3))


class Pairs(torch.utils.data.Dataset):
    """Yields (tensor image, tensor label), as torchvision datasets with a transform do."""

    def __init__(self, stimuli):
        self.stimuli, self.transform = stimuli, image_transform(16)[0]

    def __len__(self):
        return len(self.stimuli)

    def __getitem__(self, i):
        return self.transform(self.stimuli.image(i)), torch.tensor(self.stimuli.coords["label"][i])


def test_torch_dataset_as_stimuli(tmp_path, stimuli):
    from_set = extract(conv_net(), stimuli, ["0", "3"], tmp_path / "a.nc",
                       transform=image_transform(16), batch_size=4, progress=False)
    from_dataset = extract(conv_net(), Pairs(stimuli), ["0", "3"], tmp_path / "b.nc",
                           batch_size=4, progress=False)
    a, b = open_activations(from_set), open_activations(from_dataset)
    for layer in ["0", "3"]:
        np.testing.assert_array_equal(layer_activation(a, layer).values,
                                      layer_activation(b, layer).values)
    np.testing.assert_array_equal(b["label"].values, stimuli.coords["label"])
    assert list(b["stimulus_id"].values) == [f"Pairs/{i}" for i in range(N)]
    assert b.attrs["stimulus_set"] == "Pairs" and b.attrs["transform"] == "none"
    a.close()
    b.close()
    # ids of one's own; bare images (no label); PIL images need a transform
    images_only = [stimuli.image(i) for i in range(N)]
    named = DatasetStimuli(images_only, stimulus_id=stimuli.stimulus_id, name="pil")
    path = extract(conv_net(), named, ["0"], tmp_path / "c.nc", transform=image_transform(16),
                   progress=False)
    tree = open_activations(path)
    assert list(tree["stimulus_id"].values) == list(stimuli.stimulus_id)
    assert "label" not in tree.coords
    tree.close()
    with pytest.raises(TypeError, match=r"Without a transform.*Image.*image_transform"):
        extract(conv_net(), named, ["0"], tmp_path / "d.nc", progress=False)


def test_timm_model_by_name(tmp_path, stimuli):
    pytest.importorskip("timm")
    from neuroalign.models import create_model

    torch.manual_seed(0)
    model = create_model("timm/vit_tiny_patch16_224", img_size=16, patch_size=8, depth=2,
                         embed_dim=24, num_heads=2)
    path = extract(model, stimuli, "blocks.*", tmp_path / "v.nc", transform=image_transform(16),
                   tokens="cls", progress=False)
    model.eval()
    with torch.no_grad():
        x = torch.stack([image_transform(16)[0](stimuli.image(i)) for i in range(N)])
        tokens = model.blocks(model.norm_pre(model._pos_embed(model.patch_embed(x))))
    tree = open_activations(path)
    got = layer_activation(tree, "blocks.1").values
    assert got.shape == (N, 24)
    np.testing.assert_allclose(got, tokens[:, 0].numpy(), atol=1e-5)
    tree.close()
    with pytest.raises(ValueError, match=r"Unknown timm model 'vit_tiny_patch16'.*vit_tiny"):
        create_model("timm/vit_tiny_patch16")


def save_tiny_checkpoint(path, seed, step):
    from neuroalign.models import create_model
    from neuroalign.training.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    model = create_model("conv_mae_tiny")
    config = {"model": "conv_mae_tiny", "model_kwargs": {}, "seed": seed, "image_size": 16,
              "masking": "periphery", "mask_ratio": 0.8, "fill": "mean"}
    save_checkpoint(path, model=model, optimizer=None, config=config, step=step)
    return model.eval()


def test_several_checkpoints_and_index(tmp_path, stimuli):
    runs = [(tmp_path / "seed0" / "checkpoint.pt", 0, 100), (tmp_path / "seed1" / "checkpoint.pt", 1, 250)]
    models = [save_tiny_checkpoint(path, seed, step) for path, seed, step in runs]
    index = extract_checkpoints([r[0] for r in runs], stimuli, None, tmp_path / "acts",
                                batch_size=4, progress=False)
    assert index.name == "index.csv"
    ds = open_activation_index(index, "encoder.blocks.2")
    da = ds["activation"]
    assert da.dims == ("checkpoint", "presentation", "channel", "y", "x")
    assert hasattr(da.data, "dask")  # lazy
    assert list(ds["checkpoint"].values) == ["seed0_checkpoint", "seed1_checkpoint"]
    assert list(ds["step"].values) == [100, 250] and list(ds["seed"].values) == [0, 1]
    for k, (path, _, _) in enumerate(runs):
        assert ds["sha256"].values[k] == hashlib.sha256(path.read_bytes()).hexdigest()
        with torch.no_grad():
            x = torch.stack([image_transform(16)[0](stimuli.image(i)) for i in range(N)])
            expected = models[k].forward_intermediates(x)[2].numpy()
        np.testing.assert_allclose(da.isel(checkpoint=k).values, expected, atol=1e-6)
    assert list(ds["stimulus_id"].values) == list(stimuli.stimulus_id)
    # files of one index must share the stimuli
    other = extract(models[0], stimuli.subset(slice(0, 5)), None, tmp_path / "acts" / "o.nc",
                    transform=image_transform(16), progress=False)
    text = index.read_text().splitlines()
    bad = tmp_path / "acts" / "bad.csv"
    bad.write_text("\n".join([*text, text[-1].replace("seed1_checkpoint.nc", other.name)]) + "\n")
    with pytest.raises(ValueError, match=r"o\.nc holds other stimulus ids"):
        open_activation_index(bad, "encoder.blocks.2")


def test_readable_without_neuroalign(tmp_path, stimuli):
    """netCDF4 (and xarray) alone read the file: neuroalign cannot even be imported."""
    path = extract(conv_net(), stimuli, ["0", "3"], tmp_path / "plain.nc",
                   transform=image_transform(16), progress=False)
    blocker = tmp_path / "blocked"
    blocker.mkdir()
    (blocker / "neuroalign.py").write_text("raise ImportError('neuroalign is not installed')\n")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(blocker)!r})
        try:
            import neuroalign
        except ImportError:
            pass
        else:
            raise SystemExit("neuroalign was importable")
        import netCDF4, numpy as np, xarray as xr
        with netCDF4.Dataset({str(path)!r}) as ds:
            ds.set_auto_mask(False)  # plain arrays, not masked ones
            np.save({str(tmp_path / "conv.npy")!r}, ds["0/activation"][:])
            ids = list(ds["stimulus_id"][:])
            axes = ds["0/activation"].getncattr("axes")
        tree = xr.open_datatree({str(path)!r}, engine="netcdf4")
        np.save({str(tmp_path / "fc.npy")!r}, tree["3"]["activation"].values)
        print(",".join(ids), axes, sep="|")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    ids, axes = out.stdout.strip().split("|")
    assert ids.split(",") == list(stimuli.stimulus_id) and axes == "presentation channel y x"
    tree = open_activations(path)
    np.testing.assert_array_equal(np.load(tmp_path / "conv.npy"), layer_activation(tree, "0").values)
    np.testing.assert_array_equal(np.load(tmp_path / "fc.npy"), layer_activation(tree, "3").values)
    tree.close()
