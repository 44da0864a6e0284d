"""Clips made with PyAV for the video tests: drifting gratings, moving dots, a static texture."""

import numpy as np
import pytest

av = pytest.importorskip("av")

from neuroalign.data.synthetic_clips import write_clip  # noqa: E402

SIZE, FPS = 32, 8


def write_video(path, frames: np.ndarray, fps: int = FPS, codec: str = "ffv1") -> None:
    """frames (T, H, W, 3) uint8 -> a video file; ffv1 (in .mkv) is lossless."""
    write_clip(path, frames, fps, codec)


def grating(n: int, speed: float = 2.0, period: float = 8.0, angle: float = 0.0) -> np.ndarray:
    """A drifting sine grating: (n, SIZE, SIZE, 3) uint8, ``speed`` px per frame."""
    y, x = np.mgrid[:SIZE, :SIZE].astype(float)
    u = x * np.cos(angle) + y * np.sin(angle)
    t = np.arange(n)[:, None, None]
    g = 127.5 + 120 * np.sin(2 * np.pi * (u[None] - speed * t) / period)
    return np.repeat(g.astype(np.uint8)[..., None], 3, axis=-1)


def dots(n: int, velocity=(1, 2), count: int = 6, seed: int = 0) -> np.ndarray:
    """Bright dots moving with ``velocity`` (dy, dx) px per frame on black, wrapping around."""
    rng = np.random.default_rng(seed)
    where = rng.integers(0, SIZE, size=(count, 2))
    frames = np.zeros((n, SIZE, SIZE, 3), np.uint8)
    for t in range(n):
        for y, x in (where + t * np.asarray(velocity)) % SIZE:
            frames[t, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = 255
    return frames


def texture(n: int, seed: int = 1) -> np.ndarray:
    """A static random texture, the same in every frame."""
    image = np.random.default_rng(seed).integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
    return np.repeat(image[None], n, axis=0)


@pytest.fixture
def clip_folder(tmp_path):
    """Four lossless 24-frame clips at 8 fps (3 s): two gratings, dots, a texture."""
    root = tmp_path / "clips"
    root.mkdir()
    write_video(root / "grating_right.mkv", grating(24))
    write_video(root / "grating_down.mkv", grating(24, angle=np.pi / 2))
    write_video(root / "dots.mkv", dots(24))
    write_video(root / "texture.mkv", texture(24))
    return root


@pytest.fixture
def clip_tools():
    """The clip makers of this module (test modules cannot import a conftest)."""
    import types

    return types.SimpleNamespace(write_video=write_video, grating=grating, dots=dots,
                                 texture=texture, FPS=FPS, SIZE=SIZE)
