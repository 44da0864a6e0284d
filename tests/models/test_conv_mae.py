import pytest
import torch

from neuroalign.models import create_model, list_models
from neuroalign.models.conv_mae import ResidualBlock


def test_paper_architecture_shapes_and_size():
    model = create_model("conv_mae")
    # the reference's 2.08 M minus its unused 1x1 convolutions
    assert sum(p.numel() for p in model.parameters()) == 1_997_466
    x = torch.rand(2, 3, 96, 96)
    recon, latent = model(x)
    assert latent.shape == (2, 128, 12, 12) and latent[0].numel() == 18_432
    assert recon.shape == x.shape
    assert recon.min() >= 0 and recon.max() <= 1
    assert model(torch.rand(1, 3, 32, 32))[1].shape == (1, 128, 4, 4)


def test_intermediates_are_the_encoder_blocks():
    model = create_model("conv_mae").eval()
    x = torch.rand(2, 3, 32, 32)
    feats = model.forward_intermediates(x)
    assert len(feats) == 9 == len(model.default_layers())
    assert [f.shape[1] for f in feats] == [32, 32, 32, 64, 64, 64, 128, 128, 128]
    assert [f.shape[-1] for f in feats] == [16, 16, 16, 8, 8, 8, 4, 4, 4]
    assert torch.equal(feats[-1], model.forward_encoder(x))
    assert (feats[-1] >= 0).all()  # latent taken after the last ReLU
    names = dict(model.named_modules())
    assert all(name in names for name in model.default_layers())


def test_residual_block_matches_its_definition():
    block = ResidualBlock(4, 8, stride=2)
    x = torch.randn(1, 4, 8, 8)
    conv = torch.nn.functional.conv2d
    h = torch.relu(conv(x, block.conv1.weight, block.conv1.bias, stride=2, padding=1))
    h = conv(h, block.conv2.weight, block.conv2.bias, padding=1)
    s = conv(x, block.shortcut.weight, block.shortcut.bias, stride=2)
    assert torch.allclose(block(x), torch.relu(h + s), atol=1e-6)


def test_registry_suggests_close_names():
    assert "conv_mae" in list_models() and list_models("conv*") == ["conv_mae", "conv_mae_tiny"]
    with pytest.raises(ValueError, match="did you mean 'conv_mae'"):
        create_model("conv_mea")
    with pytest.raises(ValueError, match="divisible by 8"):
        create_model("conv_mae")(torch.rand(1, 3, 30, 30))


def test_torchvision_models_by_name():
    model = create_model("torchvision/resnet18", weights=None).eval()
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 1000)
    with pytest.raises(ValueError, match="resnet18"):
        create_model("torchvision/resnet17")
