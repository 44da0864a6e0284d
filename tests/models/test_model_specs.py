"""Model specs: torchvision, timm, Hugging Face, OpenCLIP, module and checkpoint sources, their
weights (local files, caches, the one-line error offline) and their own preprocessing."""

from __future__ import annotations

import json
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from neuroalign.models.specs import LoadedModel, WeightsNotFoundError, load_model, parse_spec
from neuroalign.provenance import weights_sha256


@pytest.fixture
def image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (61, 47, 3), dtype=np.uint8))


@pytest.fixture
def offline(monkeypatch):
    """No network: the Hugging Face hub in offline mode, torch hub downloads failing."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("torchvision:resnet50", ("torchvision", "resnet50")),
        ("timm:vit_base_patch16_224.mae", ("timm", "vit_base_patch16_224.mae")),
        ("hf:facebook/vit-mae-base", ("hf", "facebook/vit-mae-base")),
        ("open_clip:ViT-B-32/laion2b_s34b_b79k", ("open_clip", "ViT-B-32/laion2b_s34b_b79k")),
        ("module:torchvision.models:resnet18", ("module", "torchvision.models:resnet18")),
        ("conv_mae", ("neuroalign", "conv_mae")),
        ("torchvision/resnet18", ("neuroalign", "torchvision/resnet18")),
        ("runs/x/checkpoint.pt", ("checkpoint", "runs/x/checkpoint.pt")),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


def test_unknown_source_names_close_one():
    with pytest.raises(ValueError, match="Did you mean 'open_clip:'"):
        parse_spec("openclip:ViT-B-32/openai")


def test_torchvision_weights_file_and_own_preprocessing(tmp_path, image):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    torch.nn.init.normal_(reference.fc.weight)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    loaded = load_model("torchvision:resnet18", weights=path)
    assert isinstance(loaded, LoadedModel)
    assert weights_sha256(loaded.model) == weights_sha256(reference)
    assert loaded.attrs["weights_file"] == str(path) and len(loaded.attrs["weights_file_sha256"]) == 64
    own = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    transform, description = loaded.transform
    torch.testing.assert_close(transform(image), own(image), rtol=0, atol=0)
    p = loaded.preprocessing
    assert (p.size, p.resize, p.interpolation) == (224, 256, "bilinear")
    assert list(p.mean) == own.mean and list(p.std) == own.std
    # the same parameters through neuroalign's ImageTransform: the same pixels
    ours, _ = p.transform()
    torch.testing.assert_close(ours(image), own(image), rtol=0, atol=1e-6)
    assert loaded.attrs["preprocessing_resize"] == 256 and loaded.attrs["preprocessing_mean"] == str(own.mean) and "ImageClassification" in description


def test_torchvision_missing_weights_one_line(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as err:
        load_model("torchvision:resnet18", weights="IMAGENET1K_V1")
    text = _one_line(err)
    assert "resnet18-f37072fd.pth" in text and str(tmp_path) in text and "get_model('resnet18'" in text


def test_torchvision_unknown_weights_lists_them():
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        load_model("torchvision:resnet18", weights="IMAGENET1K_V9")


def test_torchvision_cached_weights_load_offline(tmp_path, monkeypatch, offline):
    """A weights file already in TORCH_HOME is used without the network."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    reference = torchvision.models.resnet18(weights=None)
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(reference.state_dict(), folder / weights.url.rsplit("/", 1)[1])
    monkeypatch.setattr(torchvision.models.ResNet18_Weights.IMAGENET1K_V1, "get_state_dict",
                        lambda *a, **k: torch.load(folder / weights.url.rsplit("/", 1)[1]), raising=False)
    loaded = load_model("torchvision:resnet18")
    assert weights_sha256(loaded.model) == weights_sha256(reference)
    assert loaded.attrs["weights"] == "torchvision ResNet18_Weights.IMAGENET1K_V1"


def test_timm_weights_file_and_data_config(tmp_path, image, offline):
    pytest.importorskip("timm")
    import timm.data

    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    path = tmp_path / "vit_tiny.safetensors"
    from safetensors.torch import save_file

    save_file(reference.state_dict(), str(path))
    loaded = load_model("timm:vit_tiny_patch16_224", weights=path)
    assert weights_sha256(loaded.model) == weights_sha256(reference)
    config = timm.data.resolve_data_config({}, model=reference)
    own = timm.data.create_transform(**config)
    transform, _ = loaded.transform
    torch.testing.assert_close(transform(image), own(image), rtol=0, atol=0)
    p = loaded.preprocessing
    assert p.size == config["input_size"][-1] and p.interpolation == config["interpolation"]
    assert p.resize == int(p.size / config["crop_pct"])
    ours, _ = p.transform()
    torch.testing.assert_close(ours(image), own(image), rtol=0, atol=1e-6)


def test_timm_missing_weights_one_line(offline):
    pytest.importorskip("timm")
    with pytest.raises(WeightsNotFoundError) as err:
        load_model("timm:vit_tiny_patch16_224.augreg_in21k")
    text = _one_line(err)
    assert "timm/vit_tiny_patch16_224.augreg_in21k" in text and "HF_HUB_OFFLINE" in text


def _save_hf(folder, config, processor):
    import transformers

    transformers.AutoModel.from_config(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_hf_vit_mae_sees_every_patch_in_order(tmp_path, offline):
    """ViTMAEModel masks 75% of patches and shuffles the rest by default: loaded through a
    spec it keeps all patches, in order, whatever the random state."""
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTMAEConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, image_size=32, patch_size=8)
    folder = _save_hf(tmp_path / "mae", config, transformers.ViTImageProcessor(size={"height": 32, "width": 32}))
    loaded = load_model(f"hf:{folder}")
    assert loaded.model.config.mask_ratio == 0.0
    x = torch.randn(3, 3, 32, 32)
    torch.manual_seed(1)
    first = loaded.model(x)
    torch.manual_seed(2)
    second = loaded.model(x)
    assert first.last_hidden_state.shape == (3, 1 + 16, 32)  # class token + every patch
    torch.testing.assert_close(first.last_hidden_state, second.last_hidden_state, rtol=0, atol=0)
    assert torch.equal(first.ids_restore, torch.arange(16).expand(3, 16))
    assert not first.mask.any()
    # the library's own forward without masking, patches in order: the same tokens
    plain = transformers.ViTMAEModel.from_pretrained(folder, mask_ratio=0.0).eval()
    expected = plain(x, noise=torch.arange(16.0).expand(3, 16)).last_hidden_state
    torch.testing.assert_close(first.last_hidden_state, expected, rtol=0, atol=1e-6)


def test_hf_preprocessing_is_the_processor(tmp_path, image, offline):
    transformers = pytest.importorskip("transformers")
    config = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, image_size=28, patch_size=14)
    processor = transformers.BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 28, "width": 28},
                                               image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.25, 0.3])
    folder = _save_hf(tmp_path / "dino", config, processor)
    loaded = load_model(f"hf:{folder}")
    transform, _ = loaded.transform
    expected = transformers.AutoImageProcessor.from_pretrained(folder)(images=image, return_tensors="pt")
    torch.testing.assert_close(transform(image), expected["pixel_values"][0], rtol=0, atol=0)
    p = loaded.preprocessing
    assert (p.size, p.resize, p.interpolation) == (28, 32, "bicubic")
    assert p.mean == pytest.approx((0.4, 0.5, 0.6)) and p.std == pytest.approx((0.2, 0.25, 0.3))
    # overridden: neuroalign's transform with the processor's values where not overridden
    resized = load_model(f"hf:{folder}", image_size=56)
    assert (resized.preprocessing.size, resized.preprocessing.resize) == (56, 64)
    assert resized.transform[0](image).shape == (3, 56, 56)
    assert resized.attrs["preprocessing"].endswith("overridden")


def test_hf_clip_gives_its_vision_tower(tmp_path, offline):
    transformers = pytest.importorskip("transformers")
    config = transformers.CLIPConfig(
        text_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32},
        vision_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "intermediate_size": 32, "image_size": 32, "patch_size": 16},
        projection_dim=8)
    processor = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    folder = _save_hf(tmp_path / "clip", config, processor)
    loaded = load_model(f"hf:{folder}")
    assert not hasattr(loaded.model, "text_model")
    out = loaded.model(torch.randn(2, 3, 32, 32))
    assert out.last_hidden_state.shape == (2, 1 + 4, 16)


def test_hf_missing_hub_model_one_line(offline):
    pytest.importorskip("transformers")
    with pytest.raises(WeightsNotFoundError) as err:
        load_model("hf:facebook/vit-mae-base")
    assert "facebook/vit-mae-base" in _one_line(err)


def test_hf_folder_without_config(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(f"hf:{tmp_path}")


def test_open_clip_weights_file_and_preprocess(tmp_path, image, offline):
    open_clip = pytest.importorskip("open_clip")
    config = {"embed_dim": 16,
              "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
              "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 16, "heads": 2, "layers": 1}}
    (tmp_path / "na-tiny-clip.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "na-tiny-clip.json")
    reference, _, preprocess = open_clip.create_model_and_transforms("na-tiny-clip")
    path = tmp_path / "tiny.pt"
    torch.save(reference.state_dict(), path)
    loaded = load_model("open_clip:na-tiny-clip", weights=path)
    assert weights_sha256(loaded.model) == weights_sha256(reference.visual)
    torch.testing.assert_close(loaded.transform[0](image), preprocess(image), rtol=0, atol=0)
    p = loaded.preprocessing
    assert (p.size, p.resize, p.interpolation) == (32, 32, "bicubic")
    ours, _ = p.transform()
    torch.testing.assert_close(ours(image), preprocess(image), rtol=0, atol=1e-6)


def test_open_clip_missing_weights_one_line(offline):
    pytest.importorskip("open_clip")
    with pytest.raises(WeightsNotFoundError) as err:
        load_model("open_clip:ViT-B-32/laion2b_s34b_b79k")
    assert "ViT-B-32/laion2b_s34b_b79k" in _one_line(err)


def test_module_factory_and_weights(tmp_path):
    import torchvision

    loaded = load_model("module:torchvision.models:resnet18", seed=3)
    again = load_model("module:torchvision.models:resnet18", seed=3)
    assert weights_sha256(loaded.model) == weights_sha256(again.model)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r.pt"
    torch.save({"state_dict": reference.state_dict()}, path)
    from_file = load_model("module:torchvision.models:resnet18", weights=path)
    assert weights_sha256(from_file.model) == weights_sha256(reference)
    with pytest.raises(ValueError, match="has no attribute 'nope'"):
        load_model("module:torchvision.models:nope")


def test_weights_file_that_does_not_fit(tmp_path):
    import torchvision

    path = tmp_path / "r34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit the model"):
        load_model("torchvision:resnet18", weights=path)


def test_registered_names_keep_random_seeded_weights():
    a = load_model("conv_mae_tiny", seed=0)
    b = load_model("torchvision/resnet18", seed=0)
    assert a.attrs["weights"] == "random initialisation, seed 0"
    assert b.preprocessing.size == 224 and b.preprocessing.mean is None
    with pytest.raises(ValueError, match="--weights applies"):
        load_model("conv_mae_tiny", weights="IMAGENET1K_V1")


def test_cli_extracts_a_hugging_face_folder_with_its_preprocessing(tmp_path, capsys, offline):
    transformers = pytest.importorskip("transformers")
    import netCDF4

    from neuroalign.cli import main

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    config = transformers.ViTMAEConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, image_size=32, patch_size=8)
    model = _save_hf(tmp_path / "mae", config, transformers.ViTImageProcessor(size={"height": 32, "width": 32}))
    out = tmp_path / "a.nc"
    assert main(["extract", f"hf:{model}", "--stimuli", str(folder), "--out", str(out),
                 "--layers", "layernorm", "--device", "cpu"]) == 0
    with netCDF4.Dataset(out) as ds:
        assert ds.model_spec == f"hf:{model}" and ds.preprocessing == "Hugging Face ViTImageProcessor"
        assert ds.preprocessing_mean == "[0.5, 0.5, 0.5]" and ds.input_size == 32
        stored = ds["layernorm/activation"][:]
    # the library's own forward on the processor's pixels, every patch in order
    processor = transformers.AutoImageProcessor.from_pretrained(model)
    images = [Image.open(folder / f"im{i}.png").convert("RGB") for i in range(3)]
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    plain = transformers.ViTMAEModel.from_pretrained(model, mask_ratio=0.0).eval()
    with torch.no_grad():
        expected = plain(pixels, noise=torch.arange(16.0).expand(3, 16)).last_hidden_state
    np.testing.assert_allclose(stored, expected.numpy(), rtol=0, atol=1e-6)


def test_cli_missing_weights_is_one_error_line(tmp_path, capsys, monkeypatch, offline):
    from neuroalign.cli import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert main(["layers", "torchvision:resnet18"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neuroalign: error: torchvision:resnet18 weights IMAGENET1K_V1")


def test_block_groups_and_the_blocks_keyword():
    import torchvision

    from neuroalign.extraction import BLOCKS, block_groups, resolve_layers

    resnet = torchvision.models.resnet18(weights=None)
    groups = block_groups(resnet)
    assert groups == {f"layer{i}": [f"layer{i}.0", f"layer{i}.1"] for i in range(1, 5)}
    # the downsample Sequential (conv, batch norm) is no stack of blocks
    assert resolve_layers(resnet, None) == [b for blocks in groups.values() for b in blocks]
    assert resolve_layers(resnet, BLOCKS) == resolve_layers(resnet, None)
    # a model's own default_layers() is still its default; the keyword gives every block
    conv = load_model("conv_mae_tiny").model
    assert resolve_layers(conv, None) == conv.default_layers()
    assert set(conv.default_layers()) <= set(resolve_layers(conv, BLOCKS))
    with pytest.raises(ValueError, match="no repeated blocks"):
        resolve_layers(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()), BLOCKS)


def test_cli_layers_dry_run_groups_repeated_blocks(capsys):
    pytest.importorskip("timm")
    from neuroalign.cli import main

    assert main(["layers", "timm/vit_tiny_patch16_224"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("timm/vit_tiny_patch16_224: VisionTransformer, input 3×224×224; "
                             "default layers: blocks.0 … blocks.11 (12)")
    rows = {line.split()[0]: line.split()[1:] for line in out[1:]}
    assert rows["blocks.{0…11}"] == ["1×197×192", "(default)"]  # 196 patches + class token
    assert rows["blocks.{0…11}.mlp.fc1"] == ["1×197×768"]
    assert not any(name.startswith("blocks.3") for name in rows)
    assert main(["layers", "timm/vit_tiny_patch16_224", "--expand"]) == 0
    expanded = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert "blocks.3.mlp.fc1" in expanded and len(expanded) > 12 * len(rows) / 2


def test_cli_layers_dry_run_failure_is_one_line(capsys):
    pytest.importorskip("timm")
    from neuroalign.cli import main

    assert main(["layers", "timm/vit_tiny_patch16_224", "--image-size", "32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "VisionTransformer failed on an input of 1×3×32×32" in err[0]
