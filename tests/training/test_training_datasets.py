"""Training image sources: STL-10 through torchvision (a fake local archive, never the network),
CIFAR-10 from the shared data, folders of images."""

import hashlib
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from neuroalign.data.datasets import folder_images, load_images
from neuroalign.training import PretrainConfig, pretrain


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_stl10(tmp_path, monkeypatch):
    """A tiny ``stl10_binary.tar.gz`` in STL-10's binary layout, with torchvision's checksums
    patched to it and every network access turned into an error."""
    import torchvision.datasets.utils as tv_utils
    from torchvision.datasets import STL10

    rng = np.random.default_rng(0)
    images = {"unlabeled": rng.integers(0, 256, (5, 96, 96, 3), dtype=np.uint8),
              "train": rng.integers(0, 256, (3, 96, 96, 3), dtype=np.uint8),
              "test": rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)}
    build = tmp_path / "build" / "stl10_binary"
    build.mkdir(parents=True)
    for split, pixels in images.items():
        # STL-10 stores each image channel by channel, each channel column-major
        pixels.transpose(0, 3, 2, 1).tofile(build / f"{split}_X.bin")
        if split != "unlabeled":
            (np.arange(len(pixels), dtype=np.uint8) % 10 + 1).tofile(build / f"{split}_y.bin")
    root = tmp_path / "root"
    root.mkdir()
    archive = root / STL10.filename
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(build, arcname="stl10_binary")

    def no_network(*args, **kwargs):
        raise AssertionError("the test tried to download")

    monkeypatch.setattr(tv_utils, "_urlretrieve", no_network)
    monkeypatch.setattr(STL10, "url", "http://invalid.invalid/stl10_binary.tar.gz")
    monkeypatch.setattr(STL10, "tgz_md5", md5(archive))
    monkeypatch.setattr(STL10, "train_list", [[f, md5(build / f)] for f in ("train_X.bin", "train_y.bin", "unlabeled_X.bin")])
    monkeypatch.setattr(STL10, "test_list", [[f, md5(build / f)] for f in ("test_X.bin", "test_y.bin")])
    return root, images


def test_stl10_download_path_reads_the_archive(fake_stl10):
    root, images = fake_stl10
    assert not (root / "stl10_binary").exists()
    got = load_images("stl10", path=root)  # download=True: finds the archive, checks it, unpacks
    assert (root / "stl10_binary" / "unlabeled_X.bin").is_file()
    assert got.dtype == torch.uint8 and got.shape == (5, 3, 96, 96)
    np.testing.assert_array_equal(got.permute(0, 2, 3, 1).numpy(), images["unlabeled"])
    train = load_images("stl10", path=root, split="train", max_images=2)
    np.testing.assert_array_equal(train.permute(0, 2, 3, 1).numpy(), images["train"][:2])


def test_stl10_missing_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="STL-10 not found"):
        load_images("stl10", path=tmp_path, download=False)
    with pytest.raises(ValueError, match="must be one of"):
        load_images("stl10", path=tmp_path, split="validation")


def test_pretrain_on_stl10(fake_stl10, tmp_path):
    root, _ = fake_stl10
    cfg = PretrainConfig(model="conv_mae_tiny", dataset="stl10", data_path=str(root), image_size=32,
                         batch_size=4, steps=2, log_every=1, device="cpu")
    path = pretrain(cfg, tmp_path / "run", progress=False)
    assert path.is_file()


def write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_imagefolder_and_flat_layouts(tmp_path):
    red, blue = np.zeros((20, 20, 3), np.uint8), np.zeros((30, 30, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    wide = np.zeros((20, 60, 3), np.uint8)  # red | blue | red: the centre crop is blue
    wide[:, :20, 0] = wide[:, 40:, 0] = 255
    wide[:, 20:40, 2] = 255
    write(tmp_path / "tree" / "cats" / "a.png", red)
    write(tmp_path / "tree" / "dogs" / "b.png", blue)
    write(tmp_path / "tree" / "dogs" / "c.png", wide)
    got = folder_images(tmp_path / "tree", 8, progress=False)
    assert got.shape == (3, 3, 8, 8) and got.dtype == torch.uint8
    assert got[0, :, 4, 4].tolist() == [255, 0, 0]  # sorted by path: cats/a, dogs/b, dogs/c
    assert got[1, :, 4, 4].tolist() == [0, 0, 255]
    assert (got[2, 2] > 200).all() and (got[2, 0] < 50).all()  # centre-cropped, not squashed
    write(tmp_path / "flat" / "x.png", red)
    write(tmp_path / "flat" / "y.jpg", blue)
    flat = load_images("folder", path=tmp_path / "flat", image_size=8, max_images=1, progress=False)
    assert flat.shape == (1, 3, 8, 8)


def test_unreadable_image_is_named(tmp_path):
    write(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match="broken.jpg"):
        folder_images(tmp_path, 8, progress=False)


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="holds no images"):
        folder_images(tmp_path, 8)
    with pytest.raises(FileNotFoundError, match="no such folder: .*nope"):
        folder_images(tmp_path / "nope", 8)
    with pytest.raises(ValueError, match="must be one of"):
        load_images("imagenet")


@pytest.mark.shared_data("cifar10_jpeg.tar.gz")
def test_cifar10_from_the_shared_data(shared_data):
    from neuroalign.data.cifar import load_cifar10

    got = load_images("cifar10", max_images=20)
    assert got.shape == (20, 3, 32, 32) and got.dtype == torch.uint8
    reference = load_cifar10("train").images[:20]
    np.testing.assert_array_equal(got.permute(0, 2, 3, 1).numpy(), reference)
