"""Soft foreground maps from rembg, computed once per image and cached on disk.

The maps weight the loss (``loss_region = "foreground_weighted"`` / ``"foreground_only"``) and
serve as saliency maps for fixations (``fixation = "saliency"``). Each map is rembg's raw mask
(``only_mask=True``, no post-processing, so it stays soft): uint8 (H, W), 255 = foreground.

Cache: one ``.npy`` file per image under ``cache_dir()/foreground/<model>/``, named by the
SHA-256 of the model name, the image shape and its bytes, written atomically (temporary file,
then rename). An unreadable or wrong-shaped entry is recomputed with a warning — a missing map
is never replaced by "all ones", as the reference did.

rembg and onnxruntime come with the extra ``pip install "neuroalign[foreground]"``; they are
imported only when a map has to be computed (cached maps need neither), and their absence is
one :class:`MissingExtraError` naming that command.

Model files: rembg looks for ``<model>.onnx`` in ``U2NET_HOME`` (``<model>.onnx`` or
``models/<model>/<model>.onnx``) and downloads it when absent, saying so on stderr first. When
``U2NET_HOME`` is unset and ``NEUROALIGN_DATA/u2net/<model>.onnx`` exists, that folder is used.
With the model file present nothing goes over the network: onnxruntime's telemetry is switched
off before each session is created, and rembg's sessions that send images to a remote service
are refused.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from neuroalign.data.files import cache_dir as neuroalign_cache_dir
from neuroalign.data.files import data_root

__all__ = ["INSTALL_FOREGROUND", "MissingExtraError", "cache_key", "default_cache_dir",
           "foreground_maps", "rembg_session"]

INSTALL_FOREGROUND = 'pip install "neuroalign[foreground]"'


class MissingExtraError(ImportError, ValueError):
    """An optional dependency of neuroalign is not installed; the message names the extra.

    Also a ValueError, so the ``neuroalign`` command reports it as one line like any other bad
    setting.
    """


def foreground_maps(
    images,
    model: str = "u2netp",
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Soft foreground maps of a set of images, from rembg, cached on disk.

    Args:
        images: a ``StimulusSet`` (all images of one size), a uint8 array (N, H, W, 3) RGB, or
            a uint8 torch tensor (N, 3, H, W) (the trainer's layout).
        model: a rembg session name (``u2netp``, ``u2net``, ``isnet-general-use`` …).
        cache_dir: the folder of this model's maps; default
            ``neuroalign.data.files.cache_dir() / "foreground" / model``.
        progress: show a progress bar over the images to compute.

    Returns:
        (N, H, W) uint8 maps in [0, 255], 255 = foreground.

    Raises:
        ValueError: unknown rembg model, or images of the wrong type, shape or dtype.
        FileNotFoundError: the model file is not found and cannot be downloaded.
        MissingExtraError: a map is to be computed and rembg or onnxruntime is not installed.
    """
    pixels = _as_uint8_images(images)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir(model)
    n, h, w, _ = pixels.shape
    out = np.empty((n, h, w), dtype=np.uint8)
    todo = []
    for i in range(n):
        path = folder / f"{cache_key(pixels[i], model)}.npy"
        cached = _read_cached(path, (h, w))
        if cached is None:
            todo.append((i, path))
        else:
            out[i] = cached
    if todo:
        session = rembg_session(model)
        remove = _import_rembg().remove
        folder.mkdir(parents=True, exist_ok=True)
        for i, path in tqdm(todo, desc=f"foreground maps ({model})", disable=not progress):
            mask = np.asarray(remove(pixels[i], session=session, only_mask=True), dtype=np.uint8)
            if mask.ndim == 3:
                mask = mask[..., 0]
            if mask.shape != (h, w):
                raise ValueError(
                    f"rembg model {model!r} returned a mask of shape {mask.shape} for an image "
                    f"of {h}×{w}."
                )
            _write_atomic(path, mask)
            out[i] = mask
    return out


def default_cache_dir(model: str) -> Path:
    """``neuroalign.data.files.cache_dir() / "foreground" / model``."""
    return neuroalign_cache_dir() / "foreground" / model


def cache_key(image: np.ndarray, model: str) -> str:
    """SHA-256 hex digest of the model name, the image's shape and its bytes."""
    digest = hashlib.sha256()
    digest.update(model.encode())
    digest.update(repr(tuple(image.shape)).encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def rembg_session(model: str = "u2netp"):
    """A rembg session by name, with a clear error when its model file cannot be had.

    When ``U2NET_HOME`` is unset and ``NEUROALIGN_DATA/u2net/<model>.onnx`` exists, rembg is
    pointed at that folder (for this call only). onnxruntime's telemetry is switched off first.
    """
    rembg = _import_rembg()
    import onnxruntime
    from rembg.sessions import sessions_class

    by_name = {sc.name(): sc for sc in sessions_class}
    if model not in by_name:
        raise ValueError(f"The rembg model must be one of {sorted(by_name)}; got {model!r}.")
    session_class = by_name[model]
    if not getattr(session_class, "is_local", lambda: True)():
        raise ValueError(f"The rembg model {model!r} sends the images to a remote service; "
                         "neuroalign computes foreground maps on this machine only.")
    if hasattr(onnxruntime, "disable_telemetry_events"):  # a no-op where there is no telemetry
        onnxruntime.disable_telemetry_events()
    home = os.environ.get("U2NET_HOME", "").strip()
    root = data_root()
    local = root / "u2net" if root is not None else None
    use_local = not home and local is not None and (local / f"{model}.onnx").is_file()
    with _environ("U2NET_HOME", str(local) if use_local else None):
        where = _model_folder(session_class)
        if where is not None and _existing_model(session_class, model) is None:
            into = getattr(session_class, "model_dir", lambda: where)()
            print(f"rembg model {model}.onnx not found in {where}: rembg downloads it from its "
                  f"GitHub release into {into} (set U2NET_HOME to a folder holding it to stay "
                  "offline).", file=sys.stderr)
        try:
            return rembg.new_session(model)
        except Exception as err:  # rembg/pooch raise many kinds when the download fails
            raise FileNotFoundError(
                f"Cannot load the rembg model file {model}.onnx: not found in "
                f"{where or home or '~/.u2net (U2NET_HOME unset)'} and it could not be downloaded "
                f"({type(err).__name__}: {err}). Put {model}.onnx in a folder and set U2NET_HOME "
                f"to it, or NEUROALIGN_DATA to a folder holding u2net/{model}.onnx."
            ) from err


def _import_rembg():
    """The rembg module, or one MissingExtraError naming the extra that installs it."""
    try:
        # onnxruntime first: rembg calls sys.exit when it cannot import onnxruntime
        import onnxruntime  # noqa: F401
        import rembg
    except ImportError as err:
        raise MissingExtraError(
            f"Foreground maps need rembg and onnxruntime, which are not installed ({err}): "
            f"{INSTALL_FOREGROUND}"
        ) from None
    return rembg


def _model_folder(session_class) -> str | None:
    """Where rembg looks for the model file first (``U2NET_HOME`` when set), if it says."""
    home = getattr(session_class, "legacy_home", None) or getattr(session_class, "u2net_home", None)
    return home() if home is not None else None


def _existing_model(session_class, model: str) -> str | None:
    """The model file rembg would use without downloading, or None when it would download."""
    fname = f"{model}.onnx"
    resolve = getattr(session_class, "resolve_existing", None)
    if resolve is not None:
        return resolve(fname)
    path = os.path.join(_model_folder(session_class) or "", fname)
    return path if os.path.isfile(path) else None


def _as_uint8_images(images) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB from a StimulusSet, an array or a (N, 3, H, W) tensor."""
    from neuroalign.data.stimuli import StimulusSet

    if isinstance(images, StimulusSet):
        if images.images is not None:
            return images.images
        arrays = [np.asarray(images.image(i)) for i in range(len(images))]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(
                f"Stimulus set {images.name!r} has images of several sizes {sorted(shapes)[:5]}; "
                "resize them to one size before computing foreground maps."
            )
        return np.stack(arrays)
    try:
        import torch

        if isinstance(images, torch.Tensor):
            if images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
                raise ValueError(
                    "Image tensors must be uint8 with shape (N, 3, H, W); got "
                    f"{images.dtype} {tuple(images.shape)}."
                )
            return images.permute(0, 2, 3, 1).cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"Image arrays must be uint8 with shape (N, H, W, 3); got {images.dtype} {images.shape}."
            )
        return images
    raise TypeError(
        "foreground_maps needs a StimulusSet, a uint8 array (N, H, W, 3) or a uint8 tensor "
        f"(N, 3, H, W); got {type(images).__name__}."
    )


def _read_cached(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The cached map, or None when absent; a corrupt entry is reported and ignored."""
    if not path.is_file():
        return None
    try:
        mask = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        warnings.warn(f"Corrupt foreground cache entry {path} ({err}); recomputing it.", stacklevel=3)
        return None
    if mask.shape != shape or mask.dtype != np.uint8:
        warnings.warn(
            f"Foreground cache entry {path} holds {mask.dtype} {mask.shape}, expected uint8 "
            f"{shape}; recomputing it.",
            stacklevel=3,
        )
        return None
    return mask


def _write_atomic(path: Path, mask: np.ndarray) -> None:
    tmp = path.with_name(f"{path.stem}.part-{os.getpid()}.npy")
    try:
        np.save(tmp, mask, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _environ(name: str, value: str | None):
    """Set an environment variable for the duration of a block (nothing when ``value`` is None)."""
    if value is None:
        yield
        return
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
