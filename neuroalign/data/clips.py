"""Video clips as stimuli: a folder of video files or of frame folders, sampled into
presentations of a fixed number of frames, decoded ahead in worker threads.

A :class:`ClipSet` is a stimulus source that :func:`neuroalign.extraction.extract` takes: each
item is a clip's sampled frames as a (time, height, width, 3) uint8 array. Frames are sampled
by rate (``frames=16, fps=8``: 16 frames 1/8 s apart, from the clip's start or, with
``stride``, from every window start) or by count (``fps=None``: ``frames`` spread evenly over
the whole clip). Video files are decoded with PyAV (``pip install 'neuroalign[video]'``).
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from neuroalign.data.stimuli import IMAGE_SUFFIXES

__all__ = ["VIDEO_SUFFIXES", "ClipSet", "ClipError"]

#: File name suffixes read as video files (any case).
VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v")
_EPS = 1e-6


class ClipError(ValueError):
    """A clip that cannot be read or is too short; the message names the clip."""


def _av():
    try:
        import av
    except ImportError:
        raise ImportError("Decoding video files needs PyAV: pip install 'neuroalign[video]'.") from None
    return av


class _Clip:
    """One clip: where its frames are, how many, at what native rate."""

    def __init__(self, clip_id: str, path: Path, frame_rate: float | None):
        self.id, self.path = clip_id, path
        if path.is_dir():
            self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise ClipError(f"{path}: a frame folder without image files ({', '.join(IMAGE_SUFFIXES)}).")
            self.n_frames, self.rate = len(self.files), frame_rate
        else:
            self.files = []
            self.n_frames, self.rate = _probe(path)

    def indices(self, times: np.ndarray) -> np.ndarray:
        """The frames shown at ``times`` (s from the clip's start)."""
        if self.rate is None:
            raise ClipError(f"{self.path}: a frame folder has no frame rate; give frame_rate= "
                            "(its frames per second) to sample it by rate.")
        return np.floor(times * self.rate + _EPS).astype(int)

    def read(self, index: np.ndarray, resize: int | None) -> np.ndarray:
        """Frames ``index`` (ints, ascending) as (len(index), H, W, 3) uint8."""
        if self.files:
            return np.stack([_read_image(self.files[i], self.path, resize) for i in index])
        return _decode(self.path, index, self.rate or 0.0, resize)


def _read_image(file: Path, clip: Path, resize: int | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(file) as im:
            im = im.convert("RGB")
            if resize is not None:
                w, h = _resized(im.width, im.height, resize)
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            return np.asarray(im)
    except (OSError, ValueError) as err:
        raise ClipError(f"{clip}: frame {file.name} is unreadable ({err}).") from None


def _resized(width: int, height: int, shorter: int) -> tuple[int, int]:
    scale = shorter / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _probe(path: Path) -> tuple[int, float]:
    """(frames, native frames per second) of a video file, without decoding it."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ClipError(f"{path}: no video stream in the file.")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.base_rate or stream.guessed_rate
            n = int(stream.frames or 0)
            if n <= 0:  # not in the header (webm, mkv): count the packets
                n = sum(1 for packet in container.demux(stream) if packet.size)
    except ClipError:
        raise
    except (av.FFmpegError, OSError, ValueError) as err:
        raise ClipError(f"{path}: unreadable video ({' '.join(str(err).split())}).") from None
    if not rate or n <= 0:
        raise ClipError(f"{path}: unreadable video (no frames or frame rate).")
    return n, float(rate)


def _decode(path: Path, index: np.ndarray, rate: float, resize: int | None) -> np.ndarray:
    """Decode frames ``index`` of a video file; far into the file, seek to a keyframe first."""
    av = _av()
    wanted = {int(i) for i in index}
    last, got = int(index[-1]), {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            start, base = stream.start_time or 0, stream.time_base
            seek = index[0] > 4 * rate and base is not None
            if seek:
                container.seek(start + int((index[0] / rate) / base), stream=stream, backward=True)
            for count, frame in enumerate(container.decode(stream)):
                if seek or frame.pts is not None and base is not None:
                    if frame.pts is None:
                        raise ClipError(f"{path}: frames without timestamps after a seek.")
                    i = round(float((frame.pts - start) * base) * rate)
                else:
                    i = count
                if i in wanted:
                    if resize is not None:
                        w, h = _resized(frame.width, frame.height, resize)
                        frame = frame.reformat(width=w, height=h)
                    got[i] = frame.to_ndarray(format="rgb24")
                if i >= last:
                    break
    except ClipError:
        raise
    except (av.FFmpegError, OSError, ValueError) as err:
        raise ClipError(f"{path}: unreadable video ({' '.join(str(err).split())}).") from None
    missing = sorted(wanted - set(got))
    if missing:
        raise ClipError(f"{path}: too short: it ended before frame {missing[0]} "
                        f"({len(got)} of {len(wanted)} frames decoded).")
    return np.stack([got[int(i)] for i in index])


class ClipSet:
    """Video clips as a stimulus source: one presentation per clip, or per window of a clip.

    Args:
        root: a folder holding video files (mp4, avi, webm, mkv, mov) and/or frame folders
            (a sub-folder of image files, read in name order, is one clip).
        frames: frames per presentation.
        fps: sampling rate: ``frames`` frames 1/fps s apart, each the frame shown at that
            time. None: ``frames`` frames spread evenly over the whole clip (no windows).
        stride: seconds between window starts (sliding windows; needs ``fps``): a clip of
            duration d gives windows at 0, stride, 2·stride, … while the window fits, each its
            own presentation. None: one presentation from the clip's start.
        frame_rate: the native rate of frame folders (frames per second), for ``fps``.
        resize: decode frames straight to this shorter side (in the worker threads), or None.
        workers: decoding threads; they decode the next ``prefetch`` items while the model
            runs (0: decode when asked, in the calling thread).
        prefetch: items decoded ahead of the one asked for.
        name: the set's name (default the folder's).

    Attributes:
        stimulus_id: the clip id (its file or folder name without suffix, relative to
            ``root``), or ``<clip>/w<k>`` for window k.
        coords: per presentation: ``clip``, ``clip_path``, ``window``, ``start_time`` and
            ``end_time`` (s in the clip: the first frame's time, the last frame's time plus
            one sampling interval).
        frame_times: (frames,) seconds of the sampled frames from the presentation's first
            frame (the same for every presentation), or None when sampled by count.
    """

    def __init__(self, root, frames: int, fps: float | None = None, stride: float | None = None, *,
                 frame_rate: float | None = None, resize: int | None = None, workers: int = 2,
                 prefetch: int = 16, name: str = ""):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"Clip folder {root} does not exist.")
        if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
            raise ValueError(f"'frames' must be a positive int; got {frames!r}.")
        if fps is not None and not fps > 0 or stride is not None and not stride > 0:
            raise ValueError(f"'fps' and 'stride' must be positive; got fps={fps!r}, stride={stride!r}.")
        if stride is not None and fps is None:
            raise ValueError("Sliding windows (stride=) need a sampling rate (fps=).")
        paths = sorted(p for p in root.iterdir() if not p.name.startswith(".") and (
            p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES))
        if not paths:
            raise ClipError(f"{root}: no video files ({', '.join(VIDEO_SUFFIXES)}) or frame folders.")
        self.root, self.frames, self.fps, self.stride = root, frames, fps, stride
        self.resize, self.name = resize, name or root.name
        self.clips = [_Clip(p.stem if p.is_file() else p.name, p, frame_rate) for p in paths]
        self.frame_times = None if fps is None else np.arange(frames) / fps
        self._items: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # clip, window, times, frames
        for c, clip in enumerate(self.clips):
            for k, times in enumerate(self._windows(clip)):
                self._items.append((c, k, times, clip.indices(times) if fps else self._spread(clip)))
        windowed = stride is not None
        self.stimulus_id = np.array([
            f"{self.clips[c].id}/w{k:03d}" if windowed else self.clips[c].id
            for c, k, _, _ in self._items])
        if len(set(self.stimulus_id)) != len(self.stimulus_id):
            raise ClipError(f"{root}: two clips share a name (file or folder name without suffix).")
        step = (1 / fps) if fps else None
        self.coords = {
            "clip": np.array([self.clips[c].id for c, _, _, _ in self._items]),
            "clip_path": np.array([str(self.clips[c].path) for c, _, _, _ in self._items]),
            "window": np.array([k for _, k, _, _ in self._items]),
            "start_time": np.array([self._time(c, t, i)[0] for c, _, t, i in self._items]),
            "end_time": np.array([self._time(c, t, i)[-1] + (step or self._step(c, i))
                                  for c, _, t, i in self._items]),
        }
        self.workers, self.prefetch = int(workers), int(prefetch)
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: dict[int, Future] = {}
        self._lock = threading.Lock()

    def _windows(self, clip: _Clip) -> list[np.ndarray]:
        if self.fps is None:
            if clip.n_frames < self.frames:
                raise ClipError(f"{clip.path}: too short: {clip.n_frames} frames, fewer than "
                                f"frames={self.frames}.")
            return [np.zeros(self.frames)]
        rate = clip.rate
        if rate is None:
            raise ClipError(f"{clip.path}: a frame folder has no frame rate; give frame_rate= "
                            "(its frames per second) to sample it by rate.")
        span = (self.frames - 1) / self.fps
        duration = clip.n_frames / rate
        last = duration - 1 / rate  # the time of the clip's last frame
        if span > last + _EPS:
            raise ClipError(f"{clip.path}: too short: {duration:.3g} s ({clip.n_frames} frames at "
                            f"{rate:.4g} fps), but {self.frames} frames at {self.fps:g} fps "
                            f"need {span + 1 / rate:.3g} s.")
        n = 1 if self.stride is None else int(math.floor((last - span) / self.stride + _EPS)) + 1
        return [k * (self.stride or 0.0) + np.arange(self.frames) / self.fps for k in range(n)]

    def _spread(self, clip: _Clip) -> np.ndarray:
        return np.round(np.linspace(0, clip.n_frames - 1, self.frames)).astype(int)

    def _time(self, c: int, times: np.ndarray, index: np.ndarray) -> np.ndarray:
        rate = self.clips[c].rate
        return times if self.fps else (index / rate if rate else index.astype(float))

    def _step(self, c: int, index: np.ndarray) -> float:
        rate = self.clips[c].rate
        interval = (index[-1] - index[0]) / max(len(index) - 1, 1)
        return float(max(interval, 1) / rate) if rate else 1.0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def sampling(self) -> str:
        """How frames are sampled, in words (an activation file's ``clip_sampling``)."""
        how = f"{self.frames} frames at {self.fps:g} fps" if self.fps else f"{self.frames} frames spread over each clip"
        return how + (f", windows every {self.stride:g} s" if self.stride else "")

    def __repr__(self) -> str:
        return f"ClipSet({str(self.root)!r}, {len(self.clips)} clips, {len(self)} presentations, {self.sampling})"

    def clip_frames(self, i: int) -> np.ndarray:
        """Presentation i's frames, decoded now in the calling thread."""
        c, _, _, index = self._items[int(i)]
        order = np.argsort(index, kind="stable")
        frames = self.clips[c].read(index[order], self.resize)
        out = np.empty_like(frames)
        out[order] = frames
        return out

    def item(self, i: int) -> tuple[np.ndarray, dict]:
        """Presentation i: its frames (time, H, W, 3) uint8 and coords; the next ``prefetch``
        presentations start decoding in the worker threads."""
        i = int(i)
        coords = {name: values[i] for name, values in self.coords.items()}
        if self.workers <= 0:
            return self.clip_frames(i), coords
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="neuroalign-decode")
            for j in list(self._ahead):  # asked out of order (a PCA fit set): drop the rest
                if not i <= j <= i + self.prefetch:
                    self._ahead.pop(j).cancel()
            for j in range(i, min(i + self.prefetch + 1, len(self))):
                if j not in self._ahead:
                    self._ahead[j] = self._pool.submit(self.clip_frames, j)
            future = self._ahead.pop(i)
        return future.result(), coords

    def close(self) -> None:
        """Stop the decoding threads (they are started again when needed)."""
        with self._lock:
            for future in self._ahead.values():
                future.cancel()
            self._ahead.clear()
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
