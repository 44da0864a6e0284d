import os
import time
import warnings

import numpy as np
import pytest
import torch

from neuroalign.data import foreground as fgmod
from neuroalign.data.foreground import cache_key, foreground_maps, rembg_session

# a face, a body part, an inanimate object: all on the Kriegeskorte grey background
INDICES = [0, 40, 60]


@pytest.fixture(scope="module")
def kriegeskorte_images():
    root = os.environ.get("NEUROALIGN_DATA")
    if not root:
        pytest.skip("real data not available: set NEUROALIGN_DATA to the shared data folder")
    from pathlib import Path

    for rel in ("kriegeskorte92/Kriegeskorte_Neuron2008_supplementalData.mat", "u2net/u2netp.onnx"):
        if not (Path(root) / rel).is_file():
            pytest.skip(f"{rel} not found under NEUROALIGN_DATA={root}")
    from neuroalign.data.stimulus_sets import load_kriegeskorte92

    return load_kriegeskorte92().subset(INDICES)


@pytest.fixture(scope="module")
def computed(kriegeskorte_images, tmp_path_factory):
    """Maps computed once with u2netp from NEUROALIGN_DATA/u2net (U2NET_HOME unset)."""
    mp = pytest.MonkeyPatch()
    mp.delenv("U2NET_HOME", raising=False)
    cache = tmp_path_factory.mktemp("fg")
    start = time.perf_counter()
    maps = foreground_maps(kriegeskorte_images, "u2netp", cache_dir=cache, progress=False)
    elapsed = time.perf_counter() - start
    yield maps, cache, elapsed
    mp.undo()


def test_u2netp_maps_separate_object_from_background(kriegeskorte_images, computed):
    maps, cache, _ = computed
    # rembg was pointed at NEUROALIGN_DATA/u2net for the call only
    assert "U2NET_HOME" not in os.environ
    assert maps.shape == (3, 175, 175) and maps.dtype == np.uint8
    assert maps.min() >= 0 and maps.max() <= 255
    for m in maps:
        centre = m[70:105, 70:105].astype(float).mean()
        corners = np.concatenate([m[:15, :15], m[:15, -15:], m[-15:, :15], m[-15:, -15:]]).astype(float)
        assert centre > 200 and corners.mean() < 30, (centre, corners.mean())
        # soft map: intermediate values exist at the object's edge
        assert ((m > 10) & (m < 245)).any()
    # one file per image, named by the SHA-256 of model, shape and bytes
    names = sorted(p.name for p in cache.iterdir())
    expected = sorted(f"{cache_key(im, 'u2netp')}.npy" for im in kriegeskorte_images.images)
    assert names == expected


def test_cache_hit_is_fast_and_identical(kriegeskorte_images, computed, monkeypatch):
    maps, cache, elapsed = computed

    def no_session(model):
        raise AssertionError("a cached map was recomputed")

    monkeypatch.setattr(fgmod, "rembg_session", no_session)
    start = time.perf_counter()
    again = foreground_maps(kriegeskorte_images, cache_dir=cache, progress=False)
    assert time.perf_counter() - start < 0.2 * elapsed
    assert np.array_equal(again, maps)
    # the trainer's layout (N, 3, H, W) uint8 tensor hits the same entries
    tensor = torch.from_numpy(kriegeskorte_images.images).permute(0, 3, 1, 2)
    assert np.array_equal(foreground_maps(tensor, cache_dir=cache, progress=False), maps)


def test_corrupt_cache_entries_are_recomputed_with_a_warning(kriegeskorte_images, computed, tmp_path, monkeypatch):
    maps, cache, _ = computed
    monkeypatch.delenv("U2NET_HOME", raising=False)
    for p in cache.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    key0 = cache_key(kriegeskorte_images.images[0], "u2netp")
    key1 = cache_key(kriegeskorte_images.images[1], "u2netp")
    (tmp_path / f"{key0}.npy").write_bytes(b"not a numpy file")
    np.save(tmp_path / f"{key1}.npy", np.ones((3, 3), dtype=np.uint8))
    with pytest.warns(UserWarning, match="recomputing"):
        again = foreground_maps(kriegeskorte_images, cache_dir=tmp_path, progress=False)
    assert np.array_equal(again, maps)
    assert not np.all(again == 255)  # never "all ones"
    # the entries were rewritten and now load cleanly, with no leftover temporary files
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(foreground_maps(kriegeskorte_images, cache_dir=tmp_path, progress=False), maps)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".npy"] * 3


def test_cache_key_depends_on_image_and_model():
    a = np.zeros((4, 4, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0] = 1
    assert cache_key(a, "u2netp") == cache_key(a.copy(), "u2netp")
    assert cache_key(a, "u2netp") != cache_key(b, "u2netp")
    assert cache_key(a, "u2netp") != cache_key(a, "u2net")
    assert cache_key(a, "u2netp") != cache_key(a.reshape(2, 8, 3), "u2netp")


def test_errors_name_the_model_file_and_the_allowed_inputs(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="u2netp"):
        rembg_session("u2netq")
    import rembg

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(rembg, "new_session", offline)
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"u2netp\.onnx"):
        rembg_session("u2netp")
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        foreground_maps(np.zeros((2, 8, 8, 3), dtype=np.float32), cache_dir=tmp_path)
    with pytest.raises(TypeError, match="StimulusSet"):
        foreground_maps([1, 2, 3], cache_dir=tmp_path)
