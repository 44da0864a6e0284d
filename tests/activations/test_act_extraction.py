"""Extraction with forward hooks: tiny conv net, tiny token model, resnet18 at 32 px."""

import netCDF4
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from neuroalign.activations import layer_activation, layer_names, open_activations, partial_path
from neuroalign.data.stimuli import StimulusSet
from neuroalign.extraction import extract, image_transform, list_layers, resolve_layers

N = 13


@pytest.fixture(scope="module")
def stimuli():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(N, 40, 36, 3), dtype=np.uint8)
    ids = np.array([f"img{i:03d}" for i in range(N)])[rng.permutation(N)]
    return StimulusSet(
        stimulus_id=ids, images=images, coords={"label": np.arange(N) % 4}, name="toy"
    )


def conv_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),
    )


class TinyTokens(nn.Module):
    """Patchify to tokens and run two transformer-ish blocks: (b, t, f) outputs."""

    def __init__(self, dim=12, patch=8):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.blocks = nn.ModuleList(
            [
                nn.TransformerEncoderLayer(dim, 2, 24, dropout=0.1, batch_first=True)
                for _ in range(2)
            ]
        )
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)  # (b, t, f)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(1))


def reference(model, stimuli, layers, transform, batch_size):
    """A plain forward-hook loop: per-layer (n, ...) arrays in stimulus order."""
    modules = dict(model.named_modules())
    store = {name: [] for name in layers}
    handles = [
        modules[name].register_forward_hook(
            lambda m, i, o, name=name: store[name].append(
                (o[0] if isinstance(o, tuple) else o).detach().clone()
            )
        )
        for name in layers
    ]
    model.eval()
    with torch.no_grad():
        for s in range(0, len(stimuli), batch_size):
            x = torch.stack(
                [transform(stimuli.image(i)) for i in range(s, min(s + batch_size, len(stimuli)))]
            )
            for name in layers:
                store[name].append("batch")
            model(x)
    for h in handles:
        h.remove()
    out = {}
    for name, items in store.items():
        batches, current = [], None
        for item in items:  # keep the last call per batch
            if isinstance(item, str):
                if current is not None:
                    batches.append(current)
                current = None
            else:
                current = item
        batches.append(current)
        out[name] = torch.cat(batches).numpy()
    return out


def check_file(path, ref, stimuli):
    tree = open_activations(path)
    assert layer_names(tree) == list(ref)
    np.testing.assert_array_equal(tree["stimulus_id"].values, stimuli.stimulus_id)
    np.testing.assert_array_equal(tree["label"].values, stimuli.coords["label"])
    for layer, values in ref.items():
        np.testing.assert_allclose(layer_activation(tree, layer).values, values, atol=1e-6, rtol=0)
    attrs = dict(tree.attrs)
    tree.close()
    return attrs


@pytest.mark.parametrize("batch_size", [4, 64])
def test_conv_net_matches_plain_hooks(tmp_path, stimuli, batch_size):
    model = conv_net()
    transform, desc = image_transform(32, mean=[0.5] * 3, std=[0.25] * 3)
    layers = ["0", "2", "3", "6"]
    path = extract(
        model,
        stimuli,
        layers,
        tmp_path / "a.nc",
        transform=(transform, desc),
        batch_size=batch_size,
        progress=False,
        attrs={"seed": 7, "recipe": "none"},
    )
    ref = reference(model, stimuli, layers, transform, batch_size)
    attrs = check_file(path, ref, stimuli)
    assert attrs["transform"] == desc and "Normalize" in desc
    assert attrs["input_size"] == 32 and attrs["input_shape"] == "3x32x32"
    assert attrs["model"] == "Sequential" and attrs["stimulus_set"] == "toy"
    assert attrs["seed"] == 7 and attrs["torch_version"] == torch.__version__
    assert not partial_path(path).exists()


def test_token_model_and_train_mode_restored(tmp_path, stimuli):
    model = TinyTokens()
    model.train()
    transform, _ = image_transform(32)
    path = extract(
        model,
        stimuli,
        "blocks.*",
        tmp_path / "t.nc",
        transform=transform,
        batch_size=5,
        progress=False,
    )
    assert model.training  # restored
    assert all(not m._forward_hooks for m in model.modules())  # hooks removed
    ref = reference(model, stimuli, ["blocks.0", "blocks.1"], transform, 5)  # eval: no dropout
    check_file(path, ref, stimuli)
    tree = open_activations(path)
    assert layer_activation(tree, "blocks.1").dims == ("presentation", "token", "feature")
    assert layer_activation(tree, "blocks.1").shape == (N, 16, 12)
    tree.close()


def test_resnet18_matches_plain_hooks(tmp_path, stimuli):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    transform, _ = image_transform(32)
    # layer1.0.bn1's output is changed in place by the ReLU after it: the file must hold the
    # output as the module returned it (negative values present)
    layers = ["layer1.0.bn1", "layer1", "layer2.0", "layer4", "avgpool", "fc"]
    path = extract(
        model,
        stimuli,
        layers,
        tmp_path / "r.nc",
        transform=transform,
        batch_size=8,
        progress=False,
        attrs={"model": "resnet18"},
    )
    ref = reference(model, stimuli, layers, transform, 8)
    assert (ref["layer1.0.bn1"] < 0).any()
    attrs = check_file(path, ref, stimuli)
    assert attrs["model"] == "resnet18"
    with netCDF4.Dataset(path) as ds:
        assert ds["layer1/0/bn1/activation"].shape == (N, 64, 8, 8)
        assert ds["layer2/0/activation"].shape == (N, 128, 4, 4)
        assert ds["fc/activation"].dimensions == ("presentation", "feature")


def test_shared_module_keeps_last_output_with_warning(tmp_path, stimuli):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    transform, _ = image_transform(32)
    with pytest.warns(RuntimeWarning, match=r"several times.*: layer1\.0\.relu \(2x\)\."):
        path = extract(
            model,
            stimuli,
            ["layer1.0.relu"],
            tmp_path / "r.nc",
            transform=transform,
            batch_size=16,
            progress=False,
        )
    ref = reference(model, stimuli, ["layer1.0.relu"], transform, 16)
    check_file(path, ref, stimuli)


def test_resolve_layers():
    model = TinyTokens()
    names = list_layers(model)
    # '*' stays within one dotted component, '**' spans any number
    assert resolve_layers(model, "blocks.*") == ["blocks.0", "blocks.1"]
    assert resolve_layers(model, "blocks.*.linear?") == [
        "blocks.0.linear1",
        "blocks.0.linear2",
        "blocks.1.linear1",
        "blocks.1.linear2",
    ]
    assert resolve_layers(model, "blocks.**") == [n for n in names if n.startswith("blocks")]
    assert resolve_layers(model, "**.out_proj") == [n for n in names if n.endswith(".out_proj")]
    assert resolve_layers(model, ["head", "blocks.?", "head"]) == ["head", "blocks.0", "blocks.1"]
    # no choice: every repeated block; a model without repeated blocks: every leaf module
    assert resolve_layers(model, None) == ["blocks.0", "blocks.1"]
    leaves = [n for n, m in model.named_modules() if n and not list(m.children())]
    assert resolve_layers(model, "all") == leaves and "embed" in leaves
    flat = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.ReLU()))
    assert resolve_layers(flat, None) == ["0", "1.0"]

    class WithDefault(TinyTokens):
        def default_layers(self):
            return ["blocks.*"]

    assert resolve_layers(WithDefault(), None) == resolve_layers(model, "blocks.*")
    with pytest.raises(ValueError, match=r"'block.1'.*'blocks.1'.*list_layers"):
        resolve_layers(model, ["block.1"])
    with pytest.raises(ValueError, match=r"'decoder.\*'"):
        resolve_layers(model, "decoder.*")


def test_wrong_layer_name_in_extract(tmp_path, stimuli):
    with pytest.raises(ValueError, match=r"Closest module names: \[.*'blocks.0'"):
        extract(
            TinyTokens(),
            stimuli,
            ["blocks.O"],
            tmp_path / "x.nc",
            transform=image_transform(32),
            progress=False,
        )
    assert not (tmp_path / "x.nc").exists()


def test_float16_extraction(tmp_path, stimuli):
    model = conv_net()
    transform, _ = image_transform(32)
    path = extract(
        model,
        stimuli,
        ["2", "6"],
        tmp_path / "h.nc",
        transform=transform,
        dtype="float16",
        progress=False,
    )
    ref = reference(model, stimuli, ["2", "6"], transform, 64)
    with netCDF4.Dataset(path) as ds:
        assert ds["2/activation"].getncattr("_QuantizeBitRoundNumberOfSignificantBits") == 10
    tree = open_activations(path)
    for layer in ["2", "6"]:
        stored = layer_activation(tree, layer).values
        np.testing.assert_array_less(
            np.abs(stored - ref[layer]), 2.0**-11 * np.abs(ref[layer]) + 1e-30
        )
    tree.close()


@pytest.mark.parametrize(
    "pooling, shape", [(None, (16, 16, 16)), ("avg", (16,)), (2, (16, 2, 2)), (3, (16, 3, 3))]
)
def test_pooling(tmp_path, stimuli, pooling, shape):
    model = conv_net()
    transform, _ = image_transform(32)
    path = extract(
        model,
        stimuli,
        ["3", "6"],
        tmp_path / "p.nc",
        transform=transform,
        pooling=pooling,
        batch_size=6,
        progress=False,
    )
    ref = reference(model, stimuli, ["3"], transform, 6)["3"]  # (n, 16, 16, 16)
    tree = open_activations(path)
    got = layer_activation(tree, "3").values
    assert got.shape == (N, *shape)
    assert layer_activation(tree, "6").shape == (N, 5)  # 2-D outputs are never pooled
    if pooling == "avg":
        np.testing.assert_allclose(got, ref.mean(axis=(2, 3)), atol=1e-5)
    elif pooling == 2:  # 16 / 2: plain block means
        blocks = ref.reshape(N, 16, 2, 8, 2, 8).mean(axis=(3, 5))
        np.testing.assert_allclose(got, blocks, atol=1e-5)
    elif pooling == 3:  # adaptive bins: [floor(i*16/3), ceil((i+1)*16/3))
        edges = [(int(np.floor(i * 16 / 3)), int(np.ceil((i + 1) * 16 / 3))) for i in range(3)]
        for i, (y0, y1) in enumerate(edges):
            for j, (x0, x1) in enumerate(edges):
                np.testing.assert_allclose(
                    got[:, :, i, j], ref[:, :, y0:y1, x0:x1].mean(axis=(2, 3)), atol=1e-5
                )
    assert tree.attrs["pooling"] == str(pooling).lower()
    tree.close()
    with pytest.raises(ValueError, match=r"'pooling'.*'max'"):
        extract(model, stimuli, ["3"], tmp_path / "q.nc", transform=transform, pooling="max")


def test_unreadable_image_names_the_file(tmp_path):
    folder = tmp_path / "stimuli"
    (folder / "faces").mkdir(parents=True)
    (folder / "objects").mkdir()
    rng = np.random.default_rng(0)
    for i, sub in enumerate(["faces", "faces", "objects", "objects"]):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
            folder / sub / f"s{i}.png"
        )
    (folder / "objects" / "broken.jpg").write_bytes(b"not an image at all")
    stim = StimulusSet.from_folder(folder)
    out = tmp_path / "acts.nc"
    with pytest.raises(ValueError, match=r"^Cannot read stimulus 'objects/broken' from .*broken\.jpg"):
        extract(
            conv_net(),
            stim,
            ["2"],
            out,
            transform=image_transform(16),
            batch_size=2,
            progress=False,
        )
    assert not out.exists()
    good = stim.subset(stim.stimulus_id != "objects/broken")
    path = extract(conv_net(), good, ["2"], out, transform=image_transform(16), progress=False,
                   overwrite=True)  # discards the .partial the failed run left
    tree = open_activations(path)
    np.testing.assert_array_equal(tree["category"].values, ["faces", "faces", "objects", "objects"])
    assert tree["image_path"].values[0].endswith("s0.png")
    tree.close()


def test_layer_that_never_runs(tmp_path, stimuli):
    model = nn.Module()
    model.net, model.unused = conv_net(), nn.Linear(2, 2)
    model.forward = model.net.forward
    with pytest.raises(ValueError, match=r"\['unused'\] did not run"):
        extract(
            model,
            stimuli,
            ["net.2", "unused"],
            tmp_path / "u.nc",
            transform=image_transform(32),
            progress=False,
        )
    assert partial_path(tmp_path / "u.nc").exists() and not (tmp_path / "u.nc").exists()


def test_all_leaves_skip_modules_that_never_run(tmp_path, stimuli):
    model = TinyTokens()  # MultiheadAttention never calls its out_proj module
    with pytest.warns(RuntimeWarning, match="out_proj"):
        path = extract(
            model,
            stimuli.subset(slice(0, 4)),
            "all",
            tmp_path / "d.nc",
            transform=image_transform(16),
            progress=False,
        )
    tree = open_activations(path)
    leaves = resolve_layers(model, "all")
    assert layer_names(tree) == [n for n in leaves if not n.endswith("out_proj")]
    tree.close()


def test_model_default_layers_match_forward_intermediates(tmp_path, stimuli):
    from neuroalign.models import create_model

    torch.manual_seed(0)
    model = create_model("conv_mae_tiny")
    transform, _ = image_transform(32)
    path = extract(
        model,
        stimuli,
        None,
        tmp_path / "m.nc",
        transform=transform,
        batch_size=5,
        progress=False,
        attrs={"model": "conv_mae_tiny"},
    )
    model.eval()
    with torch.no_grad():
        x = torch.stack([transform(stimuli.image(i)) for i in range(N)])
        ref = model.forward_intermediates(x)  # an independent path to the same activations
    tree = open_activations(path)
    assert layer_names(tree) == model.default_layers()
    for layer, expected in zip(model.default_layers(), ref, strict=True):
        np.testing.assert_allclose(
            layer_activation(tree, layer).values, expected.numpy(), atol=1e-6
        )
    tree.close()


def test_forward_stops_after_the_last_layer(tmp_path, stimuli):
    """After the first batch, the modules after the last chosen layer (the decoder) do not
    run; a layer that runs twice in a pass (a shared module) keeps the whole pass."""
    from neuroalign.models import create_model

    model = create_model("conv_mae_tiny", seed=0)
    decoder_calls = []
    model.decoder.blocks.register_forward_hook(lambda *args: decoder_calls.append(1))
    transform = image_transform(32)
    extract(model, stimuli, None, tmp_path / "a.nc", transform=transform, batch_size=4,
            progress=False)
    assert -(-N // 4) > 1 and len(decoder_calls) == 1  # the first batch only

    shared = nn.ReLU()
    net = nn.Sequential(nn.Conv2d(3, 2, 3), shared, nn.Conv2d(2, 2, 3), shared, nn.Flatten())
    after = []
    net[4].register_forward_hook(lambda *args: after.append(1))
    with pytest.warns(RuntimeWarning, match="several times"):
        path = extract(net, stimuli, ["1"], tmp_path / "b.nc", transform=transform, batch_size=4,
                       progress=False)
    assert len(after) == -(-N // 4)  # every batch ran through to the end
    x = torch.stack([transform[0](stimuli.image(i)) for i in range(N)])
    with torch.no_grad():
        expected = torch.relu(net[2](torch.relu(net[0](x))))  # the shared ReLU's last output
    tree = open_activations(path)
    np.testing.assert_allclose(layer_activation(tree, "1").values, expected.numpy(), atol=1e-6)
    tree.close()


@pytest.mark.parametrize("name", ["vit_mae_tiny", "latent_mim_tiny"])
def test_vit_blocks_match_forward_intermediates(tmp_path, stimuli, name):
    """A ViT: every encoder block's (presentation, token, feature) output, exactly."""
    from neuroalign.models import create_model

    torch.manual_seed(0)
    model = create_model(name)
    transform, _ = image_transform(model.image_size)
    path = extract(model, stimuli, None, tmp_path / "vit.nc", transform=transform, batch_size=4,
                   progress=False, attrs={"model": name})
    model.eval()
    with torch.no_grad():
        x = torch.stack([transform(stimuli.image(i)) for i in range(N)])
        ref = model.forward_intermediates(x)
    tree = open_activations(path)
    assert layer_names(tree) == model.default_layers()
    for layer, expected in zip(model.default_layers(), ref, strict=True):
        da = layer_activation(tree, layer)
        assert da.dims == ("presentation", "token", "feature")
        np.testing.assert_allclose(da.values, expected.numpy(), atol=1e-6)
    assert list(tree["stimulus_id"].values) == list(stimuli.stimulus_id)
    tree.close()
