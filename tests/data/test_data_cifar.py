"""CIFAR-10 from a tar.gz: decoding, ids, labels, balanced subsets and the decoded cache."""

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from neuroalign.data import cifar
from neuroalign.data.cifar import balanced_subset, load_cifar10

CLASSES = ["cat", "airplane", "bird"]  # written unsorted on purpose


def _jpeg(rng, size=8):
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A tar.gz in the CIFAR layout: 3 classes, 6 train and 2 test images each."""
    monkeypatch.setenv("NEUROALIGN_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(1)
    jpegs = {}
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "README.md", b"not an image")
        for split, n in (("test", 2), ("train", 6)):
            for cls in CLASSES:
                for i in reversed(range(n)):  # archive order is not the id order
                    name = f"{split}/{cls}/{i:04d}.jpg"
                    jpegs[name] = _jpeg(rng)
                    _add(tar, name, jpegs[name])
    return archive, jpegs


def test_tiny_archive_decodes_like_pil(tiny):
    archive, jpegs = tiny
    s = load_cifar10("train", archive=archive)
    assert s.images.shape == (18, 8, 8, 3) and s.images.dtype == np.uint8
    assert s.stimulus_id[:3].tolist() == [
        "train/airplane/0000",
        "train/airplane/0001",
        "train/airplane/0002",
    ]
    assert s.coords["category"][0] == "airplane" and s.coords["category"][-1] == "cat"
    assert np.bincount(s.coords["label"]).tolist() == [6, 6, 6]
    sorted_classes = sorted(CLASSES)
    for i, sid in enumerate(s.stimulus_id):
        reference = np.asarray(Image.open(io.BytesIO(jpegs[sid + ".jpg"])).convert("RGB"))
        np.testing.assert_array_equal(s.images[i], reference)
        assert sorted_classes[s.coords["label"][i]] == s.coords["category"][i] == sid.split("/")[1]
    t = load_cifar10("test", archive=archive)
    assert len(t) == 6 and t.name == "cifar10-test"


def test_cache_hit_is_identical_and_skips_decoding(tiny, monkeypatch, tmp_path):
    archive, _ = tiny
    first = load_cifar10("train", archive=archive)
    cached = sorted(p.name for p in (tmp_path / "cache" / "cifar10").iterdir())
    assert len(cached) == 2 and all(p.endswith(".npz") for p in cached)  # both splits, no .part

    def no_decoding(_):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(cifar, "decode_archive", no_decoding)
    second = load_cifar10("train", archive=archive)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.stimulus_id, second.stimulus_id)
    np.testing.assert_array_equal(first.coords["label"], second.coords["label"])
    np.testing.assert_array_equal(first.coords["category"], second.coords["category"])


def test_balanced_subset_is_seeded_and_balanced(tiny):
    archive, _ = tiny
    a = load_cifar10("train", n_per_class=4, seed=3, archive=archive)
    b = load_cifar10("train", n_per_class=4, seed=3, archive=archive)
    full = load_cifar10("train", archive=archive)
    assert np.bincount(a.coords["label"]).tolist() == [4, 4, 4]
    np.testing.assert_array_equal(a.stimulus_id, b.stimulus_id)
    index = {s: i for i, s in enumerate(full.stimulus_id)}
    for i, sid in enumerate(a.stimulus_id):
        np.testing.assert_array_equal(a.images[i], full.images[index[sid]])
    seeds = {
        tuple(load_cifar10("train", n_per_class=2, seed=s, archive=archive).stimulus_id)
        for s in range(6)
    }
    assert len(seeds) > 1


def test_balanced_subset_errors():
    labels = np.array([0, 0, 1, 1, 1])
    idx = balanced_subset(labels, 2, seed=0)
    assert np.bincount(labels[idx]).tolist() == [2, 2] and np.all(np.diff(idx) > 0)
    for bad in (0, 3, 1.5):
        with pytest.raises(ValueError, match="n_per_class"):
            balanced_subset(labels, bad)


def test_bad_split_and_corrupt_jpeg(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROALIGN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="'train', 'test'.*'val'"):
        load_cifar10("val", archive=tmp_path / "x.tar.gz")
    archive = tmp_path / "corrupt.tar.gz"
    rng = np.random.default_rng(0)
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "train/cat/0000.jpg", _jpeg(rng))
        _add(tar, "train/cat/0001.jpg", b"\xff\xd8\xff garbage, not a jpeg")
    with pytest.raises(ValueError, match="train/cat/0001.jpg"):
        load_cifar10("train", archive=archive)
    assert not (tmp_path / "cache" / "cifar10").exists()
    with tarfile.open(archive, "w:gz") as tar:  # train only: asking for test names the splits
        _add(tar, "train/cat/0000.jpg", _jpeg(rng))
    with pytest.raises(ValueError, match=r"splits found: \['train'\]"):
        load_cifar10("test", archive=archive)


@pytest.mark.slow
def test_real_archive(shared_data, tmp_path_factory, monkeypatch):
    archive = shared_data / "cifar10_jpeg.tar.gz"
    if not archive.is_file():
        pytest.skip("cifar10_jpeg.tar.gz not under NEUROALIGN_DATA")
    monkeypatch.setenv("NEUROALIGN_CACHE", str(tmp_path_factory.mktemp("cifar_cache")))
    train = load_cifar10("train")  # decodes both splits once (~10 s)
    test = load_cifar10("test")
    assert train.images.shape == (50000, 32, 32, 3) and test.images.shape == (10000, 32, 32, 3)
    assert np.bincount(train.coords["label"]).tolist() == [5000] * 10
    assert np.bincount(test.coords["label"]).tolist() == [1000] * 10
    classes = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    assert [train.coords["category"][i * 5000] for i in range(10)] == classes
    assert train.stimulus_id[5000] == "train/automobile/0000"
    # One image checked against a direct decode of its archive member.
    with tarfile.open(archive, "r:gz") as tar:
        data = tar.extractfile("test/frog/0123.jpg").read()
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    i = int(np.flatnonzero(test.stimulus_id == "test/frog/0123")[0])
    np.testing.assert_array_equal(test.images[i], reference)
    sub = load_cifar10("test", n_per_class=10, seed=0)
    assert np.bincount(sub.coords["label"]).tolist() == [10] * 10
    again = load_cifar10("test")
    np.testing.assert_array_equal(again.images, test.images)


def _python_release(path, rng, n_train=(4, 3), n_test=3):
    """A tar.gz in the layout of CIFAR-10's own python release, 3 classes of 32 x 32 images.

    Returns the archive and {(split, label, k): image (32, 32, 3)}, k the image's number
    within its class in release order."""
    import pickle

    names = [c.encode() for c in CLASSES]  # release label order: cat, airplane, bird
    expected = {}
    counts = {}
    with tarfile.open(path, "w:gz") as tar:
        batch_names = [f"data_batch_{i + 1}" for i in range(len(n_train))] + ["test_batch"]
        for bname, n in zip(batch_names, [*n_train, n_test], strict=True):
            split = "test" if bname == "test_batch" else "train"
            labels = rng.integers(0, 3, n).tolist()
            images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            for label, image in zip(labels, images, strict=True):
                k = counts.setdefault((split, label), 0)
                counts[(split, label)] += 1
                expected[(split, label, k)] = image
            data = images.transpose(0, 3, 1, 2).reshape(n, -1)  # the release's CHW rows
            _add(tar, f"cifar-10-batches-py/{bname}",
                 pickle.dumps({b"data": data, b"labels": labels}))
        _add(tar, "cifar-10-batches-py/batches.meta", pickle.dumps({b"label_names": names}))
    return path, expected


def test_python_release_decodes_to_the_same_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROALIGN_CACHE", str(tmp_path / "cache"))
    archive, expected = _python_release(tmp_path / "cifar-10-python.tar.gz",
                                        np.random.default_rng(3))
    for split in ("train", "test"):
        s = load_cifar10(split, archive=archive)
        n = sum(1 for key in expected if key[0] == split)
        assert len(s) == n
        assert list(s.stimulus_id) == sorted(s.stimulus_id)  # by class name, then number
        for i, sid in enumerate(s.stimulus_id):
            _, category, number = sid.split("/")
            label_in_release = CLASSES.index(category)
            np.testing.assert_array_equal(
                s.images[i], expected[(split, label_in_release, int(number))]
            )
            assert s.coords["category"][i] == category
            assert sorted(CLASSES)[s.coords["label"][i]] == category


def test_default_archive_prefers_local_jpegs_else_the_release(tmp_path, monkeypatch):
    from neuroalign.data import files

    asked = []

    def fake_fetch(relpath, *, download=True):
        asked.append((relpath, download))
        if relpath == "cifar10_jpeg.tar.gz" and has_jpegs:
            return tmp_path / relpath
        if relpath == "cifar10_jpeg.tar.gz":
            raise FileNotFoundError(relpath)
        return tmp_path / relpath

    monkeypatch.setattr(cifar, "fetch", fake_fetch)
    has_jpegs = True
    assert cifar.default_archive().name == "cifar10_jpeg.tar.gz"
    assert asked == [("cifar10_jpeg.tar.gz", False)]  # never downloads the JPEG archive
    has_jpegs = False
    asked.clear()
    assert cifar.default_archive().name == "cifar-10-python.tar.gz"
    assert asked == [("cifar10_jpeg.tar.gz", False), ("cifar-10-python.tar.gz", True)]
    url, sha = files.FILES["cifar-10-python.tar.gz"]
    assert url.startswith("https://") and len(sha) == 64
