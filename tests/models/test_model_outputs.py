"""Outputs of any form and token layouts: extraction through hooks equals the libraries' own
intermediate outputs (Hugging Face ``output_hidden_states``, timm ``forward_intermediates``),
and tokens="cls"|"patches"|"mean" follow each model's layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroalign.activations import open_activations
from neuroalign.extraction import extract
from neuroalign.extraction.hooks import pick_element, split_element_keys
from neuroalign.models import TokenLayout, token_layout


@pytest.fixture
def pixels() -> torch.Tensor:
    return torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _layer(path, name) -> np.ndarray:
    tree = open_activations(path)
    try:
        return tree[name.replace(".", "/")]["activation"].values
    finally:
        tree.close()


def test_hugging_face_blocks_equal_output_hidden_states(tmp_path, pixels):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                    intermediate_size=64, image_size=32, patch_size=8)
    model = transformers.ViTModel(config, add_pooling_layer=False).eval()
    path = extract(model, pixels, "blocks", tmp_path / "a.nc", progress=False)
    with torch.no_grad():
        hidden = model(pixels, output_hidden_states=True).hidden_states
    for i in range(3):
        np.testing.assert_allclose(_layer(path, f"layers.{i}"), hidden[i + 1].numpy(), rtol=0, atol=1e-6)
    # the token layout travels with the file; the class token is hidden state token 0
    cls = extract(model, pixels, "blocks", tmp_path / "c.nc", tokens="cls", progress=False)
    np.testing.assert_allclose(_layer(cls, "layers.2"), hidden[3][:, 0].numpy(), rtol=0, atol=1e-6)
    tree = open_activations(cls)
    assert (tree.attrs["class_tokens"], tree.attrs["register_tokens"], tree.attrs["patch_size"]) == (1, 0, 8)
    tree.close()


def test_timm_tokens_follow_register_layout(tmp_path, pixels):
    timm = pytest.importorskip("timm")
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, reg_tokens=4,
                              pretrained=False).eval()
    assert token_layout(model) == TokenLayout(1, 4, 8)
    with torch.no_grad():
        _, intermediates = model.forward_intermediates(pixels, output_fmt="NLC", norm=False,
                                                       return_prefix_tokens=True)
    patches, prefix = intermediates[5]
    files = {tokens: extract(model, pixels, "blocks.5", tmp_path / f"{tokens}.nc", tokens=tokens,
                             progress=False)
             for tokens in ("all", "cls", "patches", "mean")}
    np.testing.assert_allclose(_layer(files["all"], "blocks.5"),
                               torch.cat([prefix, patches], dim=1).numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(_layer(files["cls"], "blocks.5"), prefix[:, 0].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(_layer(files["patches"], "blocks.5"), patches.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(_layer(files["mean"], "blocks.5"), patches.mean(dim=1).numpy(),
                               rtol=0, atol=1e-6)


def test_model_without_class_token_refuses_cls(tmp_path, pixels):
    from neuroalign.models import create_model

    model = create_model("vit_mae_tiny", seed=0)
    assert token_layout(model).class_tokens == 0
    with pytest.raises(ValueError, match="no class token"):
        extract(model, pixels, None, tmp_path / "a.nc", tokens="cls", progress=False)
    with pytest.raises(ValueError, match="needs the model's token layout"):
        extract(torch.nn.Sequential(torch.nn.Flatten(2)), pixels, "0", tmp_path / "b.nc",
                tokens="patches", progress=False)


def test_model_outputs_and_element_keys(tmp_path, pixels):
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_outputs import BaseModelOutput

    hidden = torch.ones(2, 3)
    out = BaseModelOutput(last_hidden_state=hidden, hidden_states=(hidden * 2,))
    assert pick_element("encoder", out, None) is hidden
    assert pick_element("encoder", out, "hidden_states")[0].sum() == 12
    with pytest.raises(ValueError, match="without the key 'pooler'"):
        pick_element("encoder", out, "pooler")
    assert split_element_keys(["a.b:0", "c.*:hidden", "d"]) == (["a.b", "c.*", "d"], [("a.b", 0), ("c.*", "hidden")])

    config = transformers.ViTMAEConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=64, image_size=32, patch_size=8, mask_ratio=0.0)
    model = transformers.ViTMAEModel(config).eval()
    noise = torch.arange(16.0).expand(len(pixels), 16)
    with torch.no_grad():
        embeddings, mask, ids_restore = model.embeddings(pixels, noise=noise)
    model.register_forward_pre_hook(lambda m, a, k: (a, {**k, "noise": noise}), with_kwargs=True)
    # the embeddings return (tokens, mask, ids_restore): "embeddings:2" keeps ids_restore
    path = extract(model, pixels, ["embeddings:2", "layers.0"], tmp_path / "e.nc", progress=False)
    np.testing.assert_array_equal(_layer(path, "embeddings"), ids_restore.numpy())
    tree = open_activations(path)
    assert tree.attrs["output_element"] == "embeddings=2"
    tree.close()
    with pytest.warns(RuntimeWarning, match="embeddings:0"):
        path = extract(model, pixels, ["embeddings"], tmp_path / "f.nc", progress=False)
    np.testing.assert_allclose(_layer(path, "embeddings"), embeddings.numpy(), rtol=0, atol=1e-6)

