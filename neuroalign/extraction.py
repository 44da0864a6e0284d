"""Extract layer activations of any torch model into an activation file (neuroalign.activations).

Forward hooks capture the outputs of the chosen modules during a full forward pass. Three
steps overlap: a loader thread prepares batch i+1 while the model runs on batch i, and a writer
thread stores batch i-1 meanwhile, its chunks deflated in parallel without the GIL (see
:class:`neuroalign.activations.ActivationWriter`). At most two batches of activations are
alive at once, whatever the number of stimuli, and memory freed after each batch is handed
back to the operating system.

Per-layer options, applied in this order: token choice for (b, token, feature) outputs,
spatial pooling for (b, channel, y, x) outputs, then a projection to k features (a seeded
Gaussian random projection or PCA), whose matrix is stored in the layer's group.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from neuroalign.activations import ActivationWriter, attr_differences, partial_path
from neuroalign.data.stimuli import StimulusSet

_GLOB_CHARS = set("*?[")
TOKENS = ("all", "cls", "mean")
PROJECTIONS = ("random", "pca")
MASK_KEYS = ("strategy", "ratio", "fill", "patch_size")
DEFAULT_PCA_FIT = 1000


def list_layers(model: nn.Module) -> list[str]:
    """Module paths of every sub-module of ``model``, in definition order."""
    return [name for name, _ in model.named_modules() if name]


def _leaf_layers(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if name and not any(module.children())]


def _glob_match(parts: Sequence[str], pattern: Sequence[str]) -> bool:
    """fnmatch per dotted component; a ``**`` component matches any number of components."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_glob_match(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return (
        bool(parts)
        and fnmatch.fnmatchcase(parts[0], pattern[0])
        and _glob_match(parts[1:], pattern[1:])
    )


def match_layers(names: Sequence[str], pattern: str) -> list[str]:
    """Module paths matching a glob, one dotted component at a time.

    ``blocks.*`` gives ``blocks.0``, ``blocks.1``, ... but not ``blocks.0.conv``; ``**`` spans
    zero or more components, so ``blocks.**`` gives ``blocks`` and every module below it.
    """
    pattern_parts = pattern.split(".")
    return [name for name in names if _glob_match(name.split("."), pattern_parts)]


def resolve_layers(model: nn.Module, layers: str | Sequence[str] | None = None) -> list[str]:
    """Turn a layer choice into module paths.

    Args:
        model: the network.
        layers: module paths (``encoder.blocks.3``), glob patterns (fnmatch per dotted
            component: ``encoder.blocks.*`` is every block, ``encoder.**`` ``encoder`` and every
            module below it; expanded in model order), or None / ``"all"``: the model's own
            ``default_layers()`` when it defines one, else every leaf module.

    Returns:
        Module paths without repeats, in the order asked.
    """
    names = list_layers(model)
    if layers is None or (isinstance(layers, str) and layers == "all"):
        if callable(getattr(model, "default_layers", None)):
            layers = list(model.default_layers())
        else:
            return _leaf_layers(model)
    if isinstance(layers, str):
        layers = [layers]
    if len(layers) == 0:
        raise ValueError("'layers' is empty; give module paths, glob patterns, None or 'all'.")
    known = set(names)
    resolved: list[str] = []
    for layer in layers:
        if not isinstance(layer, str):
            raise TypeError(f"Layer names must be strings; got {type(layer).__name__} {layer!r}.")
        if _GLOB_CHARS & set(layer):
            matches = match_layers(names, layer)
        else:
            matches = [layer] if layer in known else []
        if not matches:
            close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
            hint = f" Closest module names: {close}." if close else ""
            raise ValueError(
                f"{type(model).__name__} has no module matching {layer!r}.{hint} List them with "
                "neuroalign.extraction.list_layers(model) (or [n for n, _ in "
                "model.named_modules()])."
            )
        resolved.extend(m for m in matches if m not in resolved)
    return resolved


class ImageTransform:
    """Resize(size), CenterCrop(size), ToTensor and optionally Normalize(mean, std).

    Call it on one PIL image, as any torchvision transform; :meth:`batch` gives the same
    result (bit for bit) for a whole batch of uint8 pixels that are already ``size`` square,
    without a PIL round trip per image.
    """

    def __init__(
        self, size: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
    ):
        from torchvision import transforms

        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ValueError(f"'size' must be a positive int; got {size!r}.")
        if (mean is None) != (std is None):
            raise ValueError("Give both 'mean' and 'std' for normalisation, or neither.")
        if mean is not None and (len(mean) != 3 or len(std) != 3):
            raise ValueError(f"'mean' and 'std' need 3 values (RGB); got {mean!r}, {std!r}.")
        self.size = size
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32)
        steps = [transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()]
        self.description = f"Resize({size}) CenterCrop({size}) ToTensor"
        if mean is not None:
            steps.append(transforms.Normalize(mean, std))
            self.description += f" Normalize(mean={list(mean)}, std={list(std)})"
        self._steps = transforms.Compose(steps)

    def __call__(self, image) -> torch.Tensor:
        return self._steps(image)

    def __repr__(self) -> str:
        return f"ImageTransform({self.description})"

    def batch(self, pixels: np.ndarray) -> torch.Tensor | None:
        """(b, H, W, 3) uint8 -> (b, 3, size, size) float32; None unless H = W = size (then
        Resize and CenterCrop would change the pixels: transform each image instead)."""
        if pixels.ndim != 4 or pixels.shape[1:] != (self.size, self.size, 3):
            return None
        x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).contiguous()
        x = x.float().div(255)
        if self.mean is not None:
            x.sub_(self.mean[:, None, None]).div_(self.std[:, None, None])
        return x


def image_transform(
    size: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[ImageTransform, str]:
    """The usual stimulus preprocessing: Resize(size), CenterCrop(size), ToTensor, Normalize.

    Args:
        size: side of the square model input in pixels.
        mean, std: per-channel normalisation (both or neither); None keeps pixels in [0, 1].

    Returns:
        (transform, description): the transform (an :class:`ImageTransform`) maps an RGB PIL
        image to a float tensor (3, size, size); the description is stored in the activation
        file's attributes.
    """
    transform = ImageTransform(size, mean, std)
    return transform, transform.description


def _check_pooling(pooling) -> None:
    ok = pooling is None or pooling == "avg"
    ok = ok or (isinstance(pooling, int) and not isinstance(pooling, bool) and pooling > 0)
    if not ok:
        raise ValueError(
            "The 'pooling' parameter must be None, 'avg' or a positive int k (k x k average "
            f"grid); got {pooling!r}."
        )


def pool(x: torch.Tensor, pooling) -> torch.Tensor:
    """Spatial pooling of conv outputs; other outputs pass unchanged.

    Args:
        x: (b, c, h, w) conv output, or (b, t, f) / (b, f).
        pooling: None (keep), ``"avg"`` (global average -> (b, c)) or int k (adaptive average
            to a k x k grid -> (b, c, k, k)).
    """
    if x.ndim != 4 or pooling is None:
        return x
    if pooling == "avg":
        return x.mean(dim=(2, 3))
    return F.adaptive_avg_pool2d(x, pooling)


class _Recorder:
    """Forward hooks that keep a pooled copy of each chosen module's latest output.

    The copy is taken when the module returns, so a later in-place operation (an in-place
    ReLU after a conv) cannot change it. Copies go into buffers allocated on the first batch
    and reused for every later one, so no batch allocates its activations anew (fresh
    allocations of the same sizes fragment the heap, and the process grows batch by batch).
    With ``slots=2`` two sets of buffers alternate, batch by batch, so one batch can be
    written while the next one runs.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], pooling=None, slots: int = 1):
        modules = dict(model.named_modules())
        self.pooling = pooling
        self.outputs: dict[str, torch.Tensor] = {}
        self.calls: dict[str, int] = {}
        self._buffers: list[dict[str, torch.Tensor]] = [{} for _ in range(slots)]
        self._slot = 0
        self._handles = [modules[name].register_forward_hook(self._hook(name)) for name in layers]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    f"Layer {name!r} returned {type(output).__name__}, not a tensor (or a tuple "
                    "starting with one); choose another layer."
                )
            self.outputs[name] = self._keep(name, pool(output, self.pooling))
            self.calls[name] = self.calls.get(name, 0) + 1

        return hook

    def _keep(self, name: str, x: torch.Tensor) -> torch.Tensor:
        buffers = self._buffers[self._slot]
        buffer = buffers.get(name)
        if (
            buffer is None
            or buffer.shape[1:] != x.shape[1:]
            or len(buffer) < len(x)
            or buffer.dtype != x.dtype
            or buffer.device != x.device
        ):
            buffer = buffers[name] = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        kept = buffer[: len(x)]
        kept.copy_(x)
        return kept

    def start_batch(self) -> None:
        """Forget the last outputs; this batch's copies go to the next set of buffers."""
        self.outputs.clear()
        self.calls.clear()
        self._slot = (self._slot + 1) % len(self._buffers)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self.outputs.clear()
        self._buffers = [{} for _ in self._buffers]


# --------------------------------------------------------------------------- stimulus sources


class DatasetStimuli:
    """A torch ``Dataset`` as a stimulus source for :func:`extract`.

    Items are images, or tuples ``(image, label, ...)`` whose second element (an int, or a
    0-d tensor/array) becomes the ``label`` coordinate. An image is a PIL image (give
    ``extract`` a transform) or an already transformed (3, H, W) tensor (``transform=None``).
    Items are read one at a time, in index order.

    Args:
        dataset: anything with ``__len__`` and ``__getitem__`` (a ``torch.utils.data.Dataset``).
        stimulus_id: (n,) unique ids; default ``<name>/<index>`` (zero-padded).
        name: short name of the set, stored as provenance (default the dataset's class name).
    """

    def __init__(self, dataset, stimulus_id: Sequence[str] | None = None, name: str = ""):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(
                f"'dataset' must have __len__ and __getitem__; got {type(dataset).__name__}."
            )
        self.dataset = dataset
        self.name = name or type(dataset).__name__
        n = len(dataset)
        if stimulus_id is None:
            width = max(1, len(str(n - 1)))
            stimulus_id = [f"{self.name}/{i:0{width}d}" for i in range(n)]
        self.stimulus_id = np.asarray(stimulus_id).astype(str)
        if self.stimulus_id.shape != (n,):
            raise ValueError(
                f"'stimulus_id' must hold one id per item ({n}); got shape {self.stimulus_id.shape}."
            )
        if len(set(self.stimulus_id)) != n:
            raise ValueError("Stimulus ids must be unique.")
        self.paths = None

    def __len__(self) -> int:
        return len(self.stimulus_id)

    def item(self, i: int) -> tuple[object, dict]:
        """The i-th image and its coords (``label`` when the item is a pair)."""
        item = self.dataset[int(i)]
        if isinstance(item, (tuple, list)):
            image, rest = item[0], item[1:]
            coords = {}
            if rest and np.ndim(_to_numpy(rest[0])) == 0:
                coords["label"] = _to_numpy(rest[0])
            return image, coords
        return item, {}


def _to_numpy(value):
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _as_source(stimuli):
    if isinstance(stimuli, (StimulusSet, DatasetStimuli)):
        return stimuli
    if isinstance(stimuli, torch.utils.data.Dataset) or (
        hasattr(stimuli, "__len__") and hasattr(stimuli, "__getitem__") and not isinstance(
            stimuli, (str, bytes, np.ndarray, Mapping)
        )
    ):
        return DatasetStimuli(stimuli)
    raise TypeError(
        "'stimuli' must be a StimulusSet, a DatasetStimuli or a torch Dataset; got "
        f"{type(stimuli).__name__}."
    )


def _load_batch(source, index: np.ndarray, transform: Callable | None, mask_fn=None):
    """Stimuli ``index`` as one (b, 3, H, W) tensor, with their coords (name -> (b,))."""
    images, item_coords = [], []
    batched = None
    if isinstance(source, StimulusSet) and source.images is not None and callable(
        getattr(transform, "batch", None)
    ):
        batched = transform.batch(source.images[index])
    for i in index if batched is None else ():
        if isinstance(source, StimulusSet):
            image, coords = source.image(int(i)), None
        else:
            image, coords = source.item(int(i))
        x = transform(image) if transform is not None else image
        if not isinstance(x, torch.Tensor) or x.ndim != 3:
            what = "'transform' must map" if transform is not None else "Without a transform,"
            raise TypeError(
                f"{what} each stimulus to a tensor (3, H, W); got {type(x).__name__} "
                f"{tuple(getattr(x, 'shape', ()))} for stimulus {source.stimulus_id[i]!r}"
                + ("" if transform is not None else "; pass transform=image_transform(size)")
                + "."
            )
        if images and x.shape != images[0].shape:
            raise ValueError(
                f"Stimulus {source.stimulus_id[i]!r} has the shape {tuple(x.shape)} after the "
                f"transform but {source.stimulus_id[index[0]]!r} {tuple(images[0].shape)}; "
                "crop or resize to one size (image_transform does)."
            )
        images.append(x)
        item_coords.append(coords)
    x = torch.stack(images).float() if batched is None else batched
    if isinstance(source, StimulusSet):
        coords = {name: values[index] for name, values in source.coords.items()}
        if source.paths is not None and "image_path" not in coords:
            coords["image_path"] = np.asarray(source.paths, dtype=object)[index]
    else:
        names = set(item_coords[0])
        if any(set(c) != names for c in item_coords):
            raise ValueError("The dataset's items differ in form: some carry a label, some not.")
        coords = {name: np.stack([c[name] for c in item_coords]) for name in names}
    if mask_fn is not None:
        x = mask_fn(x, index)
    return x, coords


# --------------------------------------------------------------------------- per-layer options


def select_tokens(x: torch.Tensor, tokens: str) -> torch.Tensor:
    """Token choice for transformer outputs; other outputs pass unchanged.

    Args:
        x: (b, token, feature), or any other shape (returned as is).
        tokens: ``"all"`` (keep), ``"cls"`` (the first token -> (b, feature)) or ``"mean"``
            (the mean over all tokens, the class token included -> (b, feature)).
    """
    if x.ndim != 3 or tokens == "all":
        return x
    if tokens == "cls":
        return x[:, 0]
    return x.mean(dim=1)


def _stimulus_seed(seed: int, index: int) -> int:
    """A seed for one stimulus, independent of batch size and resume point."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def random_projection(n_units: int, k: int, seed: int, layer: str = "") -> np.ndarray:
    """A Gaussian random projection matrix, entries N(0, 1/k), seeded per layer.

    Johnson-Lindenstrauss scaling: for x (n_units,), ``x @ P`` has E||x P||² = ||x||².

    Args:
        n_units: input features (the flattened layer).
        k: output features.
        seed: the seed; the layer name is mixed in, so layers get different matrices.
        layer: the layer's module path.

    Returns:
        (n_units, k) float32.
    """
    state = np.random.SeedSequence([int(seed), zlib.crc32(layer.encode())]).generate_state(2)
    generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    return (torch.randn(n_units, k, generator=generator) / math.sqrt(k)).numpy()


def fit_pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA of (m, n_units) features by SVD of the centred data (float64).

    Each component's sign is fixed so its largest-magnitude loading is positive.

    Returns:
        (mean (n_units,), components (n_units, k), explained_variance (k,)), float32; the
        variance uses m - 1, as scikit-learn's PCA.
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    m, d = x.shape
    if not 0 < k <= min(m - 1, d):
        raise ValueError(
            f"PCA to k = {k} components needs 0 < k <= min(fit stimuli - 1, units) = "
            f"min({m - 1}, {d})."
        )
    mean = x.mean(dim=0)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
    components = vh[:k].T  # (d, k)
    biggest = components.abs().argmax(dim=0)
    signs = torch.sign(components[biggest, torch.arange(k)])
    components = components * signs
    variance = s[:k] ** 2 / (m - 1)
    return (
        mean.float().numpy(),
        components.float().numpy(),
        variance.float().numpy(),
    )


def _mask_function(mask, seed: int):
    """(fn(x (b,3,H,W), index (b,)) -> x, attrs) for the ``mask`` option of :func:`extract`."""
    from neuroalign import masking

    if mask is None:
        return None, {}
    if callable(mask):
        name = getattr(mask, "__name__", None) or repr(mask)
        return (lambda x, index: mask(x)), {"input_mask": f"callable {name}"}
    spec = {"strategy": mask} if isinstance(mask, str) else mask
    if not isinstance(spec, Mapping):
        raise TypeError(
            "'mask' must be None, a callable, a strategy name or a mapping with keys "
            f"{MASK_KEYS}; got {type(mask).__name__}."
        )
    unknown = sorted(set(spec) - set(MASK_KEYS))
    if unknown:
        raise ValueError(f"Unknown 'mask' keys {unknown}; valid keys: {MASK_KEYS}.")
    strategy = spec.get("strategy")
    if strategy not in masking.STRATEGIES:
        raise ValueError(
            f"The 'mask' strategy must be one of {masking.STRATEGIES}; got {strategy!r}."
        )
    ratio = float(spec.get("ratio", {"periphery": 0.8, "centre": 0.2}.get(strategy, 0.6)))
    fill = spec.get("fill", "mean")
    if fill not in masking.FILLS:
        raise ValueError(f"The 'mask' fill must be one of {masking.FILLS}; got {fill!r}.")
    patch_size = int(spec.get("patch_size", 8))
    masking._check_ratio(ratio)

    def fn(x: torch.Tensor, index: np.ndarray) -> torch.Tensor:
        n, _, h, w = x.shape
        if strategy == "fovea":
            from neuroalign.foveation import foveate

            return foveate(x)
        if strategy == "none":
            return x
        out = torch.empty_like(x)
        for j, i in enumerate(index):  # one generator per stimulus: reproducible anywhere
            generator = torch.Generator().manual_seed(_stimulus_seed(seed, i))
            m = masking.make_mask(
                strategy, 1, h, w, ratio, patch_size=patch_size, generator=generator
            )
            out[j : j + 1] = masking.apply_mask(x[j : j + 1], m, fill, generator)
        return out

    attrs = {
        "input_mask": f"{strategy} ratio={ratio} fill={fill}",
        "input_mask_strategy": strategy,
        "input_mask_ratio": ratio,
        "input_mask_fill": fill,
        "input_mask_seed": int(seed),
    }
    if strategy == "patches":
        attrs["input_mask_patch_size"] = patch_size
    if strategy == "fovea":
        attrs["input_mask"] = "fovea (neuroalign.foveation defaults, centre fixation)"
        for key in ("input_mask_ratio", "input_mask_fill"):
            attrs.pop(key)
    return fn, attrs


# --------------------------------------------------------------------------- the forward pass


def _layer_outputs(recorder: _Recorder, names: list[str], lenient: bool, warned: set[str]):
    """The recorded outputs of one forward pass, checked.

    Returns:
        (names, outputs): the layers kept (``lenient`` drops layers that did not run,
        with a warning) and layer -> (b, ...) tensors on the model's device.
    """
    missing = [name for name in names if name not in recorder.outputs]
    if missing and lenient and len(missing) < len(names):
        warnings.warn(
            f"Leaf modules {missing} did not run in the forward pass and are left out.",
            RuntimeWarning,
            stacklevel=3,
        )
        names = [name for name in names if name not in missing]
    elif missing:
        raise ValueError(
            f"Layers {missing} did not run in the model's forward pass; choose modules that "
            "forward() calls."
        )
    for name in names:
        if recorder.calls[name] > 1 and name not in warned:
            warned.add(name)
            warnings.warn(
                f"Module {name!r} ran {recorder.calls[name]} times in one forward pass; its "
                "last output is kept.",
                RuntimeWarning,
                stacklevel=3,
            )
    return names, {name: recorder.outputs[name] for name in names}


class _Runner:
    """The model with its hooks and the per-layer options: one batch in, arrays out."""

    def __init__(self, model, names, lenient, pooling, tokens, device, slots=1):
        self.model, self.names, self.lenient = model, names, lenient
        self.tokens, self.device = tokens, device
        self.recorder = _Recorder(model, names, pooling, slots)
        self.warned: set[str] = set()
        self.projections: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Layer -> (b, ...) outputs after token choice and pooling, on the device.

        The outputs live in the recorder's buffers: they stay valid until the batch after
        next (two slots) or the next one (one slot)."""
        self.recorder.start_batch()
        with torch.inference_mode():
            self.model(x.to(self.device, non_blocking=True))
            names, outputs = _layer_outputs(self.recorder, self.names, self.lenient, self.warned)
        self.names, self.lenient = names, False
        return {name: select_tokens(out, self.tokens) for name, out in outputs.items()}

    def set_projection(self, layer: str, matrix: np.ndarray, mean: np.ndarray | None) -> None:
        self.projections[layer] = (
            torch.as_tensor(matrix, device=self.device),
            None if mean is None else torch.as_tensor(mean, device=self.device),
        )

    def arrays(self, features: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Projected (where asked) float32 CPU arrays."""
        out = {}
        for name, values in features.items():
            if name in self.projections:
                matrix, mean = self.projections[name]
                flat = values.reshape(len(values), -1).float()
                if flat.shape[1] != matrix.shape[0]:
                    raise ValueError(
                        f"Layer {name!r} has {flat.shape[1]} units but its stored projection "
                        f"expects {matrix.shape[0]}."
                    )
                with torch.inference_mode():
                    values = (flat - mean if mean is not None else flat) @ matrix
            out[name] = values.to("cpu", torch.float32).numpy()
        return out

    def close(self) -> None:
        self.recorder.remove()


# --------------------------------------------------------------------------- extract


def _check_options(batch_size, pooling, tokens, projection, n_components) -> None:
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"'batch_size' must be a positive int; got {batch_size!r}.")
    _check_pooling(pooling)
    if tokens not in TOKENS:
        raise ValueError(f"The 'tokens' parameter must be one of {TOKENS}; got {tokens!r}.")
    if projection is not None and projection not in PROJECTIONS:
        raise ValueError(
            f"The 'projection' parameter must be None or one of {PROJECTIONS}; got {projection!r}."
        )
    if projection is not None and not (
        isinstance(n_components, int) and not isinstance(n_components, bool) and n_components > 0
    ):
        raise ValueError(
            f"projection={projection!r} needs 'n_components', a positive int; got {n_components!r}."
        )


def _batches(start: int, stop: int, batch_size: int) -> list[np.ndarray]:
    return [np.arange(s, min(s + batch_size, stop)) for s in range(start, stop, batch_size)]


def _fit_pca_projections(runner, fit_source, transform, mask_fn, batch_size, k):
    """First pass over the fit stimuli: layer -> (components, mean, explained variance)."""
    collected: dict[str, list[np.ndarray]] = {}
    for index in _batches(0, len(fit_source), batch_size):
        x, _ = _load_batch(fit_source, index, transform, mask_fn)
        for name, values in runner.features(x).items():
            collected.setdefault(name, []).append(  # a copy: the buffers are reused
                values.reshape(len(values), -1).to("cpu", torch.float32).numpy().copy()
            )
    fitted = {}
    for name, parts in collected.items():
        if parts[0].shape[1] <= k:
            continue  # stored as it is (see _layer_options)
        try:
            mean, components, variance = fit_pca(np.concatenate(parts), k)
        except ValueError as err:
            raise ValueError(f"Layer {name!r}: {err}") from err
        fitted[name] = (components, mean, variance)
    return fitted


def _check_resumed(writer: ActivationWriter, source, names: list[str], lenient: bool) -> None:
    k = writer.n_written
    done = writer.stimulus_ids
    expected = source.stimulus_id[:k]
    if k > len(source) or not np.array_equal(done, expected):
        if k > len(source):
            detail = f"it holds {k} stimuli, the set only {len(source)}"
        else:
            i = int(np.flatnonzero(done != expected)[0])
            detail = f"stimulus {i} is {str(done[i])!r} in the file but {str(expected[i])!r} in the set"
        raise ValueError(
            f"Cannot resume {writer.partial_path}: its {k} stimulus ids are not the first {k} "
            f"of the stimulus set ({detail}). Delete it or run without resume."
        )
    stored = list(writer.layer_shapes)
    # default leaves (lenient): the file lacks the leaves that never ran
    differs = not set(stored) <= set(names) if lenient else stored != list(names)
    if stored and differs:
        raise ValueError(
            f"Cannot resume {writer.partial_path}: it holds the layers {stored}, this run asks "
            f"for {list(names)}. Delete it or run without resume."
        )


def _finished_file(path: Path, source, attrs: dict) -> bool:
    """For resume: True if ``path`` is a finished file of this set with these settings."""
    import netCDF4

    with netCDF4.Dataset(path) as ds:
        stored = {k: ds.getncattr(k) for k in ds.ncattrs()}
        ids = np.asarray(ds["stimulus_id"][:]).astype(str)
    differ = attr_differences(attrs, stored)
    if differ or not np.array_equal(ids, source.stimulus_id):
        why = "; ".join(differ) if differ else "its stimulus ids differ from the set's"
        raise ValueError(
            f"{path} exists but was written with other settings ({why}); delete it or run "
            "without resume."
        )
    return True


def extract(
    model: nn.Module,
    stimuli,
    layers: str | Sequence[str] | None,
    out_path: str | Path,
    *,
    transform: Callable | tuple[Callable, str] | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    dtype: str = "float32",
    pooling: str | int | None = None,
    tokens: str = "all",
    projection: str | None = None,
    n_components: int | None = None,
    fit_stimuli=None,
    mask=None,
    seed: int = 0,
    attrs: dict | None = None,
    compression: str | None = "zlib",
    compression_level: int = 1,
    compression_threads: int | None = None,
    overlap: bool | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Run ``model`` over ``stimuli`` and write the chosen layers' activations to ``out_path``.

    The model runs in eval mode under ``torch.inference_mode`` (its training flag is restored
    afterwards). A module that runs several times in one forward pass (a shared ReLU) keeps its
    last output, with a warning. The file is written to ``<out_path>.partial`` and renamed
    when complete (see :class:`neuroalign.activations.ActivationWriter`). Loading, the forward
    pass and compression/writing overlap in three threads on an accelerator (``overlap``); at
    most two batches of activations are held at once.

    Args:
        model: any ``nn.Module`` taking a (b, 3, H, W) float tensor.
        stimuli: a :class:`StimulusSet` (images, ids and per-stimulus coords, written as
            presentation coords; a folder-based set also gets ``image_path``), a
            :class:`DatasetStimuli`, or a torch ``Dataset`` yielding images or
            (image, label) pairs (wrapped in a DatasetStimuli with ids ``<class>/<index>``).
        layers: module paths, glob patterns, or None / ``"all"`` (see :func:`resolve_layers`).
        out_path: the activation file (``.nc``).
        transform: image -> tensor (3, H, W), or the (transform, description) pair from
            :func:`image_transform`; the description (or the transform's repr) is stored.
            None only for datasets that yield tensors already.
        batch_size: stimuli per forward pass and per write.
        device: where the model runs; None keeps the model's device. A given device moves the
            model there.
        dtype: ``"float32"`` or ``"float16"`` storage.
        pooling: None, ``"avg"`` or int k (see :func:`pool`); applies to 4-D outputs only.
        tokens: ``"all"``, ``"cls"`` or ``"mean"`` (see :func:`select_tokens`); applies to
            3-D (b, token, feature) outputs only.
        projection: None, ``"random"`` (Gaussian, entries N(0, 1/k), seeded by ``seed`` and
            the layer name) or ``"pca"``: each layer's flattened output (after tokens and
            pooling) goes to ``n_components`` features; the layer's group stores the matrix
            ``projection`` (unit, feature) — and for PCA ``mean`` (unit,) and
            ``explained_variance`` (feature,) — so that ``activation = (x - mean) @ projection``.
        n_components: k, the features per layer after the projection.
        fit_stimuli: what PCA is fitted on, in a first pass before extraction: an int m (the
            first m stimuli), another stimulus set or dataset, or None (the first
            min(n, 1000) stimuli). The fit set's features are held in memory
            (m x units floats per layer).
        mask: hide part of every input before the forward pass: None; a callable
            (b, 3, H, W) tensor -> same; a strategy name of :mod:`neuroalign.masking`; or a
            mapping with ``strategy``, ``ratio`` (default 0.8 periphery, 0.2 centre, 0.6
            patches), ``fill`` (default ``"mean"``) and ``patch_size`` (8). Random masks use
            one generator per stimulus seeded from (``seed``, stimulus index), so they do not
            depend on the batch size. Recorded in the attrs ``input_mask*``.
        seed: seed of the random projection and of random masks.
        attrs: provenance stored in the file (``model``, ``checkpoint_sha256``, ``recipe``,
            ``masking``, ``seed``, ``normalisation``, ...): strings or numbers.
        compression: ``"zlib"`` (HDF5's shuffle and deflate, readable by every netCDF tool)
            or None.
        compression_level: deflate level 0-9 (0: off; 1, the default, is the fastest).
        compression_threads: threads deflating chunks; None: one per CPU core (at most 8).
        overlap: load, run and write successive batches at the same time in three threads;
            None: when the model runs on an accelerator. On a CPU device the forward pass
            already keeps every core busy, and threads competing with it slow it down more
            than the work they do (measured in benchmarks/bench_extraction.py), so the steps
            run in turn there, each using all cores.
        resume: continue an interrupted ``<out_path>.partial`` after its last complete batch:
            its stimulus ids must be the first ones of ``stimuli`` and its layers and
            attributes (except ``device`` and ``torch_version``) those of this call, else a
            ValueError; a stored projection is reused. A finished ``out_path`` with the same
            ids and attributes is returned as it is. Without a ``.partial`` file, starts afresh.
        progress: show a tqdm progress bar.

    Returns:
        The path of the finished file.
    """
    source = _as_source(stimuli)
    if len(source) == 0:
        raise ValueError("The stimulus set is empty.")
    _check_options(batch_size, pooling, tokens, projection, n_components)
    if isinstance(transform, tuple):
        transform, description = transform
    else:
        description = "none" if transform is None else repr(transform)
    if transform is not None and not callable(transform):
        raise TypeError(f"'transform' must be callable; got {type(transform).__name__}.")
    mask_fn, mask_attrs = _mask_function(mask, seed)
    names = resolve_layers(model, layers)
    # every leaf by default: leaves that forward() never calls are dropped, not an error
    lenient = (layers is None or layers == "all") and not callable(
        getattr(model, "default_layers", None)
    )
    if device is not None:
        model.to(device)
    else:
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
    if overlap is None:
        overlap = device.type != "cpu"
    out_path = Path(out_path)

    file_attrs = {
        "model": type(model).__name__,
        "stimulus_set": source.name,
        "transform": description,
        "pooling": "none" if pooling is None else str(pooling),
        "tokens": tokens,
        "projection": projection or "none",
        "torch_version": torch.__version__,
        "device": str(device),
        **mask_attrs,
        **(attrs or {}),
    }
    if projection is not None:
        file_attrs["n_components"] = n_components
        if projection == "random":
            file_attrs["projection_seed"] = int(seed)
    if projection == "pca":
        fit_source = None
        if fit_stimuli is None or isinstance(fit_stimuli, int):
            m = min(len(source), DEFAULT_PCA_FIT if fit_stimuli is None else fit_stimuli)
            if m <= 0:
                raise ValueError(f"'fit_stimuli' must be a positive int; got {fit_stimuli!r}.")
            fit_source = source.subset(slice(0, m)) if isinstance(source, StimulusSet) else None
            file_attrs["pca_fit"] = f"first {m} stimuli of {source.name or 'the set'}"
            fit_index = m
        else:
            fit_source = _as_source(fit_stimuli)
            file_attrs["pca_fit"] = f"{len(fit_source)} stimuli of {fit_source.name or 'a fit set'}"
            fit_index = None

    was_training = model.training
    n = len(source)
    first = _load_batch(source, np.arange(min(batch_size, n)), transform, mask_fn)
    file_attrs.setdefault("input_shape", "x".join(map(str, first[0].shape[1:])))
    if first[0].shape[-1] == first[0].shape[-2]:
        file_attrs.setdefault("input_size", int(first[0].shape[-1]))
    if resume and out_path.exists() and not partial_path(out_path).exists():
        _finished_file(out_path, source, file_attrs)
        return out_path

    runner = _Runner(model, names, lenient, pooling, tokens, device, 2 if overlap else 1)
    bar = tqdm(total=n, unit="img", desc="extract", disable=not progress)
    try:
        model.eval()
        with ActivationWriter(
            out_path,
            attrs=file_attrs,
            dtype=dtype,
            compression=compression,
            compression_level=compression_level,
            threads=compression_threads,
            resume=resume,
        ) as writer:
            start = writer.n_written
            if writer.resumed:
                _check_resumed(writer, source, names, lenient)
                runner.lenient = False
                if writer.layer_shapes:
                    runner.names = list(writer.layer_shapes)
                bar.update(start)
                for layer in writer.layer_shapes if projection else ():
                    matrix = writer.stored_layer_data(layer, "projection")
                    if matrix is not None:  # None: stored unprojected (units <= k)
                        mean = writer.stored_layer_data(layer, "mean")
                        runner.set_projection(layer, matrix, mean)
            if projection == "pca" and not runner.projections:
                if fit_source is None:  # first m items of a dataset
                    fit_source = _Head(source, fit_index)
                fitted = _fit_pca_projections(
                    runner, fit_source, transform, mask_fn, batch_size, n_components
                )
                for layer, (components, mean, variance) in fitted.items():
                    runner.set_projection(layer, components, mean)
                    writer.layer_data[layer] = {
                        "projection": (("unit", "feature"), components),
                        "mean": (("unit",), mean),
                        "explained_variance": (("feature",), variance),
                    }
            _run_batches(runner, writer, source, start, batch_size, transform, mask_fn, first,
                         projection, n_components, seed, bar, overlap)
    finally:
        bar.close()
        runner.close()
        model.train(was_training)
    return out_path


class _Head:
    """The first m items of a stimulus source (the PCA fit set of a dataset)."""

    def __init__(self, source, m: int):
        self.source, self.stimulus_id, self.name = source, source.stimulus_id[:m], source.name

    def __len__(self) -> int:
        return len(self.stimulus_id)

    def item(self, i: int):
        return self.source.item(i)


def _warn_unprojected(name: str, units: int, k: int) -> None:
    warnings.warn(
        f"Layer {name!r} has {units} units, not more than n_components={k}: it is stored "
        "without projection (its group's 'projection' attribute says 'none').",
        RuntimeWarning,
        stacklevel=4,
    )


def _layer_options(features, runner, writer, projection, k, seed) -> None:
    """On the first batch of a new file: random projections and per-layer provenance."""
    for name, values in features.items():
        shape = tuple(values.shape[1:])
        axes = {4: "channel y x", 3: "token feature", 2: "feature"}[values.ndim]
        layer_attrs = {}
        if projection is not None:
            units = math.prod(shape)
            layer_attrs = {
                "projection": projection,
                "source_shape": "x".join(map(str, shape)),
                "source_axes": axes,
            }
            if units <= k:
                _warn_unprojected(name, units, k)
                layer_attrs["projection"] = "none"
            elif projection == "random" and name not in runner.projections:
                matrix = random_projection(units, k, seed, name)
                runner.set_projection(name, matrix, None)
                writer.layer_data[name] = {"projection": (("unit", "feature"), matrix)}
        if layer_attrs:
            writer.layer_attrs[name] = layer_attrs


def _write(writer: ActivationWriter, holder: list, ids, coords) -> None:
    """Write the batch in ``holder`` (its only reference), so the writer can free each layer
    as soon as it is on disk."""
    writer.write_batch(holder.pop(), ids, coords)
    _release_freed_memory()


def _load_malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _load_malloc_trim()


def _release_freed_memory() -> None:
    """Hand memory freed by the last batch back to the OS (glibc keeps freed blocks in its
    arenas otherwise, and the process's resident size creeps up batch after batch)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class _InlineExecutor:
    """An executor that runs each task at once, in the calling thread."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def submit(self, fn, *args) -> Future:
        future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as err:  # re-raised by result(), as from a thread
            future.set_exception(err)
        return future


def _executor(overlap: bool, name: str):
    return ThreadPoolExecutor(1, thread_name_prefix=name) if overlap else _InlineExecutor()


def _run_batches(runner, writer, source, start, batch_size, transform, mask_fn, first,
                 projection, k, seed, bar, overlap) -> None:
    """The batch loop: load i+1 | forward i | write i-1, overlapped in threads or in turn."""
    batches = _batches(start, len(source), batch_size)
    if not batches:
        return
    with _executor(overlap, "neuroalign-load") as loader, _executor(
        overlap, "neuroalign-write"
    ) as write_pool:
        if start == 0:
            future = loader.submit(lambda: first)
        else:
            future = loader.submit(_load_batch, source, batches[0], transform, mask_fn)
        pending = None
        try:
            for i, index in enumerate(batches):
                x, coords = future.result()
                if i + 1 < len(batches):
                    future = loader.submit(_load_batch, source, batches[i + 1], transform, mask_fn)
                features = runner.features(x)
                del x
                if writer.n_written == 0 and pending is None:
                    _layer_options(features, runner, writer, projection, k, seed)
                arrays = runner.arrays(features)
                del features
                if pending is not None:
                    pending.result()  # at most one batch waits for the writer
                    bar.update(pending.size)
                pending = write_pool.submit(_write, writer, [arrays], source.stimulus_id[index],
                                            coords)
                pending.size = len(index)
                del arrays
            pending.result()
            bar.update(pending.size)
        except BaseException:
            future.cancel()
            if pending is not None:
                try:  # the batch before is good: let its write finish before the file closes
                    pending.result()
                except BaseException:
                    pass
            raise


# --------------------------------------------------------------------------- several checkpoints


def checkpoint_attrs(path: str | Path, state: dict) -> dict:
    """Provenance attributes of a neuroalign checkpoint (for the activation file)."""
    from neuroalign.training.checkpoint import sha256_file

    cfg = state.get("config", {})
    attrs = {
        "model": str(state.get("model_name", cfg.get("model", ""))),
        "checkpoint": str(path),
        "checkpoint_sha256": sha256_file(path),
        "training_steps": int(state.get("step", 0)),
    }
    if cfg.get("seed") is not None:
        attrs["seed"] = int(cfg["seed"])
    if "masking" in cfg:
        attrs["masking"] = (
            f"{cfg['masking']} ratio={cfg.get('mask_ratio')} fill={cfg.get('fill')}"
        )
    return attrs


def _file_names(paths: list[Path]) -> list[str]:
    """Unique file stems for checkpoints: the stem, with the folder name where stems repeat."""
    stems = [p.stem for p in paths]
    names = [f"{p.parent.name}_{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]
    if len(set(names)) < len(names):
        names = [f"{i:03d}_{name}" for i, name in enumerate(names)]
    return names


def extract_checkpoints(
    checkpoints: Sequence[str | Path],
    stimuli,
    layers: str | Sequence[str] | None,
    out_dir: str | Path,
    *,
    transform: Callable | tuple[Callable, str] | None = None,
    device: str | torch.device | None = "cpu",
    resume: bool = False,
    index_name: str = "index.csv",
    **options,
) -> Path:
    """Extract the same layers of several neuroalign checkpoints: one file each, plus an index.

    Args:
        checkpoints: ``.pt`` files written by the trainer (e.g. several steps or seeds).
        stimuli: as for :func:`extract`.
        layers: as for :func:`extract`.
        out_dir: folder for ``<checkpoint stem>.nc`` files and the index (created if missing).
        transform: as for :func:`extract`; None: :func:`image_transform` at each checkpoint's
            training ``image_size`` (no normalisation: neuroalign models see [0, 1] pixels).
        device: where the models run.
        resume: passed to :func:`extract`: finished files are kept, interrupted ones continued.
        index_name: the index's file name in ``out_dir``.
        **options: further keyword arguments of :func:`extract` (batch_size, pooling, ...).

    Returns:
        The index: a CSV with the columns ``name, file, checkpoint, sha256, step, seed,
        model`` (see :func:`neuroalign.activations.open_activation_index`).
    """
    from neuroalign.activations import write_activation_index
    from neuroalign.training.checkpoint import load_model

    paths = [Path(p) for p in checkpoints]
    if not paths:
        raise ValueError("'checkpoints' is empty.")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Checkpoints not found: {missing}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    user_attrs = dict(options.pop("attrs", None) or {})
    rows = []
    for path, name in zip(paths, _file_names(paths), strict=True):
        model, state = load_model(path, device or "cpu")
        attrs = checkpoint_attrs(path, state)
        size = int(state.get("config", {}).get("image_size", 224))
        out = extract(
            model,
            stimuli,
            layers,
            out_dir / f"{name}.nc",
            transform=transform if transform is not None else image_transform(size),
            device=device,
            resume=resume,
            attrs={**attrs, **user_attrs},
            **options,
        )
        rows.append(
            {
                "name": name,
                "file": out.name,
                "checkpoint": str(path),
                "sha256": attrs["checkpoint_sha256"],
                "step": attrs["training_steps"],
                "seed": attrs.get("seed", ""),
                "model": attrs["model"],
            }
        )
    return write_activation_index(out_dir / index_name, rows)
