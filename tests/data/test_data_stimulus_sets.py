"""Stimulus sets of the brain datasets and the stimulus-set registry."""

import numpy as np
import pytest

from neuroalign.data import stimulus_sets
from neuroalign.data.stimulus_sets import (
    STIMULUS_SETS,
    category_coords_92,
    load_algonauts78,
    load_cichy92,
    load_kriegeskorte92,
    load_stimulus_set,
)


def test_ids_are_stable():
    ids = stimulus_sets.ids_92()
    assert ids[0] == "kriegeskorte92/001" and ids[-1] == "kriegeskorte92/092"
    assert len(set(ids)) == 92 and len(set(stimulus_sets.ids_78())) == 78


def test_category_sizes():
    coords = category_coords_92()
    names, counts = np.unique(coords["category"], return_counts=True)
    assert dict(zip(names, counts, strict=True)) == {
        "human bodypart": 12,
        "human face": 12,
        "nonhuman bodypart": 12,
        "nonhuman face": 12,
        "natural inanimate": 23,
        "artificial inanimate": 21,
    }
    assert np.all(np.diff(coords["category_index"]) >= 0)  # grouped, in plotting order
    assert coords["animate"].sum() == 48 and coords["face"].sum() == 24


def test_unknown_set_suggests():
    with pytest.raises(ValueError, match="'cichy92'") as err:
        load_stimulus_set("cichy-92")
    assert "kriegeskorte92" in str(err.value)  # all valid names listed
    assert set(STIMULUS_SETS) == {
        "kriegeskorte92",
        "cichy92",
        "algonauts78",
        "cifar10-train",
        "cifar10-test",
    }


def test_kriegeskorte92_reads_file(shared_data):
    s = load_kriegeskorte92()
    assert s.images.shape == (92, 175, 175, 3) and s.images.dtype == np.uint8
    assert len(set(s.stimulus_id)) == 92
    # The flags in the file agree with the 6-way category (and with the hard-coded layout).
    expected = category_coords_92()
    for key, value in expected.items():
        np.testing.assert_array_equal(s.coords[key], value, err_msg=key)
    assert s.images[:, 0, 0].tolist() == [[128, 128, 128]] * 92  # grey background


def test_cichy92_same_images_same_order(shared_data):
    k, c = load_kriegeskorte92(), load_cichy92()
    np.testing.assert_array_equal(k.stimulus_id, c.stimulus_id)
    for key in ("category", "human", "face", "animal", "natural"):
        np.testing.assert_array_equal(k.coords[key], c.coords[key])
    # Grey background made white, every Cichy image is most like its Kriegeskorte namesake.
    grey = np.all(np.abs(k.images.astype(int) - 128) < 3, axis=-1)
    kw = np.where(grey[..., None], 255, k.images).reshape(92, -1).astype(float)
    cw = np.stack([np.asarray(c.image(i)) for i in range(92)]).reshape(92, -1).astype(float)
    assert cw.shape == kw.shape  # 175x175x3 each
    kw -= kw.mean(1, keepdims=True)
    cw -= cw.mean(1, keepdims=True)
    r = (cw / np.linalg.norm(cw, axis=1, keepdims=True)) @ (
        kw / np.linalg.norm(kw, axis=1, keepdims=True)
    ).T
    assert np.array_equal(r.argmax(1), np.arange(92))
    assert np.diag(r).min() > 0.85


def test_algonauts78(shared_data):
    s = load_stimulus_set("algonauts78")
    assert len(s) == 78 and s.stimulus_id[0] == "algonauts78/01"
    assert s.image(77).mode == "RGB"
    assert load_algonauts78().paths == s.paths
