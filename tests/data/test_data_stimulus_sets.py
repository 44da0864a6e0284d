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
        "cowley-v4",
        "cowley-v4-natural",
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


def write_images(folder, names):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(folder / name)


def test_a_folder_says_which_files_it_skipped(tmp_path):
    from neuroalign.data.stimuli import StimulusSet

    write_images(tmp_path, ["a.png", "b.jpg"])
    for name in ["notes.txt", "z.csv", ".DS_Store"]:
        (tmp_path / name).write_text("x")
    with pytest.warns(UserWarning, match=r"skipped 2 file\(s\) that are not images .*: notes.txt, z.csv$"):
        stimuli = StimulusSet.from_folder(tmp_path)
    assert stimuli.stimulus_id.tolist() == ["a", "b"]
    many = tmp_path / "many"
    write_images(many, ["a.png"])
    for i in range(7):
        (many / f"n{i}.txt").write_text("x")
    with pytest.warns(UserWarning, match=r"skipped 7 .*n0.txt, n1.txt, n2.txt, n3.txt, n4.txt, \.\.\.$"):
        StimulusSet.from_folder(many)


def test_a_csv_maps_file_names_to_stimulus_ids(tmp_path):
    from neuroalign.data.stimuli import StimulusSet

    folder = tmp_path / "images"
    write_images(folder, ["image_01.jpg", "image_02.jpg", "image_10.jpg"])
    table = tmp_path / "map.csv"
    # with or without the suffix; ids in another order than the files
    table.write_text("file,stimulus_id\nimage_10.jpg,kriegeskorte92/010\n"
                     "image_01,kriegeskorte92/001\nimage_02.jpg,kriegeskorte92/002\n")
    stimuli = StimulusSet.from_folder(folder, stimulus_ids=table)
    assert stimuli.stimulus_id.tolist() == ["kriegeskorte92/001", "kriegeskorte92/002",
                                            "kriegeskorte92/010"]
    assert [p.rsplit("/", 1)[-1] for p in stimuli.paths] == ["image_01.jpg", "image_02.jpg",
                                                             "image_10.jpg"]
    mapped = StimulusSet.from_folder(folder, stimulus_ids={"image_01": "x", "image_02": "y",
                                                            "image_10.jpg": "z"})
    assert mapped.stimulus_id.tolist() == ["x", "y", "z"]


@pytest.mark.parametrize("text, message", [
    ("file,stimulus_id\nimage_01.jpg,a\n", r"1 image\(s\) of .* have no id in .*map.csv: \['image_02.jpg'\]"),
    ("file,stimulus_id\nimage_01.jpg,a\nimage_02.jpg,b\nimage_03.jpg,c\n",
     r"1 file\(s\) of .*map.csv are not images of .*: \['image_03.jpg'\]"),
    ("name,id\nimage_01.jpg,a\n", "needs the header 'file,stimulus_id'"),
    ("file,stimulus_id\nimage_01.jpg,a\nimage_01.jpg,b\n", r"line 3: 'image_01.jpg' is mapped twice"),
    ("file,stimulus_id\nimage_01.jpg,a\nimage_02.jpg,a\n", "ids must be unique"),
    ("file,stimulus_id\nimage_01.jpg,\n", "line 2: empty"),
])
def test_a_bad_id_map_is_named(tmp_path, text, message):
    from neuroalign.data.stimuli import StimulusSet

    folder = tmp_path / "images"
    write_images(folder, ["image_01.jpg", "image_02.jpg"])
    (tmp_path / "map.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        StimulusSet.from_folder(folder, stimulus_ids=tmp_path / "map.csv")


def test_paths_are_not_set_names(tmp_path):
    from neuroalign.data.stimuli import StimulusSet

    with pytest.raises(FileNotFoundError, match=r"^no such folder: stimuli/mine$"):
        load_stimulus_set("stimuli/mine")
    (tmp_path / "file.png").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"^not a folder: .*file.png$"):
        load_stimulus_set(str(tmp_path / "file.png"))
    with pytest.raises(FileNotFoundError, match=r"^no such folder: .*nope$"):
        StimulusSet.from_folder(tmp_path / "nope")
    with pytest.raises(ValueError, match="Unknown stimulus set 'mine' .and no folder"):
        load_stimulus_set("mine")
