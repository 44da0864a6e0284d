"""Seeded model construction, the weights' identity in the file, and resume refusing other
weights or settings."""

import hashlib

import netCDF4
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from neuroalign.activations import partial_path
from neuroalign.cli import main
from neuroalign.data.stimuli import StimulusSet
from neuroalign.extraction import extract, image_transform
from neuroalign.models import create_model
from neuroalign.provenance import weights_sha256


def plain_digest(model):
    """An independent reference: names, dtypes, shapes and bytes via numpy."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(np.ascontiguousarray(tensor.detach().cpu().numpy()).tobytes())
    return digest.hexdigest()


def test_weights_sha256_matches_a_plain_reference_and_sees_every_change():
    model = create_model("conv_mae_tiny", seed=0)
    assert weights_sha256(model) == plain_digest(model)
    assert weights_sha256(model) == weights_sha256(model.state_dict())
    name = next(iter(model.state_dict()))
    changed = create_model("conv_mae_tiny", seed=0)
    with torch.no_grad():
        changed.state_dict()[name].view(-1)[0] += 1e-6
    assert weights_sha256(changed) != weights_sha256(model)
    # same bytes, other dtype or shape: another digest
    assert weights_sha256({"w": torch.zeros(4)}) != weights_sha256({"w": torch.zeros(2, 2)})
    assert weights_sha256({"w": torch.zeros(4)}) != weights_sha256({"w": torch.zeros(4, dtype=torch.int32)})
    # buffers count (BatchNorm running statistics)
    bn = nn.BatchNorm1d(3)
    before = weights_sha256(bn)
    bn.running_mean += 1
    assert weights_sha256(bn) != before


@pytest.mark.parametrize("name", ["conv_mae_tiny", "torchvision/resnet18"])
def test_create_model_seed(name):
    state = torch.random.get_rng_state()
    a, b = create_model(name, seed=0), create_model(name, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global state is untouched
    assert weights_sha256(a) == weights_sha256(b)
    assert weights_sha256(create_model(name, seed=1)) != weights_sha256(a)


def make_folder(tmp_path, n=10, broken=None):
    folder = tmp_path / "stimuli"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"s{i:02d}.png")
    if broken is not None:
        (folder / f"s{broken:02d}.png").write_bytes(b"not an image")
    return folder


def cli_args(folder, out, *extra):
    return ["extract", "torchvision/resnet18", "--stimuli", str(folder), "--out", str(out),
            "--image-size", "32", "--batch-size", "2", "--device", "cpu",
            "--layers", "layer1.0.conv1", "fc", *extra]


def test_cli_random_weights_are_seeded(tmp_path, same_contents, contents_of):
    folder = make_folder(tmp_path)
    a, b, c = tmp_path / "a.nc", tmp_path / "b.nc", tmp_path / "c.nc"
    assert main(cli_args(folder, a, "--seed", "0")) == 0
    assert main(cli_args(folder, b, "--seed", "0")) == 0
    assert main(cli_args(folder, c, "--seed", "1")) == 0
    same_contents(a, b)
    (va, aa), (vc, ac) = contents_of(a), contents_of(c)
    assert aa["weights_sha256"] == weights_sha256(create_model("torchvision/resnet18", seed=0))
    assert aa["weights_sha256"] != ac["weights_sha256"]
    assert aa["weights"] == "random initialisation, seed 0"
    scale = np.abs(va["fc/activation"]).mean()
    assert np.abs(va["fc/activation"] - vc["fc/activation"]).mean() > 0.1 * scale


def test_cli_resume_refuses_other_weights(tmp_path, capsys, same_contents):
    folder = make_folder(tmp_path, broken=5)  # the third batch cannot be read
    out = tmp_path / "acts.nc"
    assert main(cli_args(folder, out, "--seed", "0")) == 2
    assert "Cannot read stimulus 's05'" in capsys.readouterr().err  # the plain id
    with netCDF4.Dataset(partial_path(out)) as ds:
        assert ds.getncattr("presentations_complete") == 4
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / "s05.png")
    assert main(cli_args(folder, out, "--seed", "1", "--resume")) == 2
    err = capsys.readouterr().err
    assert "weights differ" in err and "weights_sha256" in err and len(err.strip().splitlines()) == 1
    assert partial_path(out).exists()
    assert main(cli_args(folder, out, "--seed", "0", "--resume")) == 0
    reference = tmp_path / "ref.nc"
    assert main(cli_args(folder, reference, "--seed", "0")) == 0
    same_contents(out, reference)


def test_cli_image_size_zero_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(cli_args(tmp_path, tmp_path / "a.nc", "--image-size", "0"))
    assert exit_info.value.code == 2
    assert "--image-size: must be a positive int; got 0" in capsys.readouterr().err


# ------------------------------------------------------------------ finished files, resumed


def toy_stimuli(n=6):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    return StimulusSet(stimulus_id=[f"t{i}" for i in range(n)], images=images, name="toy")


def toy_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 16 * 16, 5))


BASE = dict(layers=["0", "3"], transform=image_transform(16), batch_size=4, progress=False,
            attrs={"model": "toy"})


@pytest.mark.parametrize("change, says", [
    ({"layers": ["0"]}, r"layers: file \['0', '3'\], now \['0'\]"),
    ({"dtype": "float16"}, r"dtype: file 'float32', now 'float16'"),
    ({"compression": None}, r"compression: file 'zlib level=1', now 'none'"),
    ({"compression_level": 4}, r"compression: file 'zlib level=1', now 'zlib level=4'"),
    ({"pooling": "avg"}, r"pooling: file 'none', now 'avg'"),
    ({"tokens": "cls"}, r"tokens: file 'all', now 'cls'"),
    ({"projection": "random", "n_components": 3}, r"projection: file 'none', now 'random'"),
    ({"transform": image_transform(12)}, r"transform: file 'Resize\(16\).*now 'Resize\(12\)"),
    ({"mask": "periphery"}, r"input_mask: file None, now 'periphery ratio=0.8 fill=mean'"),
    ({"model": 1}, r"the model's weights differ from the file's \(weights_sha256: file '[0-9a-f]{64}', now '[0-9a-f]{64}'\)"),
])
def test_resume_onto_a_finished_file_checks_every_setting(tmp_path, change, says):
    out = tmp_path / "acts.nc"
    stimuli = toy_stimuli()
    extract(toy_model(), stimuli, out=out, **BASE)
    before = out.read_bytes()
    options = {**BASE, **change}
    model = toy_model(options.pop("model", 0))
    with pytest.raises(ValueError, match=rf"^Cannot resume .*acts\.nc: .*{says}"):
        extract(model, stimuli, out=out, resume=True, **options)
    assert out.read_bytes() == before
    extract(toy_model(), stimuli, out=out, resume=True, **BASE)  # same settings: kept
    assert out.read_bytes() == before


def test_resume_refuses_a_partial_file_of_other_weights(tmp_path, same_contents):
    class Stop(nn.Sequential):
        def forward(self, x):
            if getattr(self, "ran", False):
                raise RuntimeError("stop")
            self.ran = True
            return super().forward(x)

    out = tmp_path / "acts.nc"
    with pytest.raises(RuntimeError, match="stop"):
        extract(Stop(*toy_model()), toy_stimuli(), out=out, **BASE)
    with pytest.raises(ValueError, match=r"acts\.nc\.partial: the model's weights differ"):
        extract(Stop(*toy_model(seed=1)), toy_stimuli(), out=out, resume=True, **BASE)
    extract(toy_model(), toy_stimuli(), out=out, resume=True, **BASE)
    reference = extract(toy_model(), toy_stimuli(), out=tmp_path / "ref.nc", **BASE)
    same_contents(out, reference)
