"""The forward pass: hooks recording the chosen modules' outputs, checks of what they recorded,
and the reductions applied to them (one batch in, arrays out)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from neuroalign.extraction.reductions import pool, select_tokens
from neuroalign.extraction.time import module_layout, per_step, pool_time, split_time

__all__ = ["Recorder", "Runner", "check_output_element", "pick_element", "split_element_keys"]


def check_output_element(output_element, names: Sequence[str]) -> dict:
    """The ``output_element`` option checked: {layer: int index or str key}, layers among
    ``names``."""
    if output_element is None:
        return {}
    if not isinstance(output_element, Mapping):
        raise TypeError(
            "'output_element' must map layer names to an index or a key; got "
            f"{type(output_element).__name__}."
        )
    unknown = sorted(set(output_element) - set(names))
    if unknown:
        raise ValueError(f"'output_element' names layers not extracted: {unknown}.")
    for layer, key in output_element.items():
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise TypeError(
                f"'output_element' of layer {layer!r} must be an int index or a str key; got "
                f"{key!r}."
            )
    return dict(output_element)


def split_element_keys(layers):
    """Layer choices with an element suffix, ``"encoder.layer.3:0"`` or ``"blocks.*:hidden"``:
    (the choices without suffixes, [(choice, key)]); an int-like key is an index."""
    if layers is None or isinstance(layers, str) and ":" not in layers:
        return layers, []
    plain, keyed = [], []
    for layer in [layers] if isinstance(layers, str) else layers:
        if isinstance(layer, str) and ":" in layer:
            layer, _, key = layer.rpartition(":")
            if not layer or not key:
                raise ValueError(f"A layer with an element is 'LAYER:KEY'; got {layer}:{key!r}.")
            keyed.append((layer, int(key) if key.lstrip("-").isdigit() else key))
        plain.append(layer)
    return plain, keyed


def pick_element(name: str, output, key: int | str | None):
    """The element of a module's output to record: ``output[key]`` of a tuple, list or
    mapping (dict, Hugging Face ``ModelOutput``); with ``key`` None a tuple's or list's
    element 0 and a mapping's first entry (a ModelOutput's main output, such as
    ``last_hidden_state``); a tensor as it is."""
    if isinstance(output, torch.Tensor):
        return output
    how = f"output_element={{{name!r}: ...}} (--layers {name}:KEY)"
    if isinstance(output, Mapping):
        if key is None and len(output):
            return next(iter(output.values()))
        if key is None or key not in output:
            given = " that is empty" if key is None else f" without the key {key!r}"
            raise ValueError(
                f"Layer {name!r} returns a {type(output).__name__}{given}; its keys are "
                f"{list(output)}; choose one with {how}."
            )
        return output[key]
    if isinstance(output, (tuple, list)):
        key = 0 if key is None else key
        if not isinstance(key, int) or not -len(output) <= key < len(output):
            raise ValueError(
                f"Layer {name!r} returns a {type(output).__name__} of {len(output)} elements; "
                f"{key!r} is not an index of it (set it with {how})."
            )
        return output[key]
    return output


class LastLayerReached(Exception):
    """Raised by the hook of the last chosen layer to end the forward pass there."""


class Recorder:
    """Forward hooks that keep a pooled copy of each chosen module's latest output.

    With ``stop_after`` set, the hook of that layer ends the forward pass once it has
    recorded (`LastLayerReached`): the modules after it (an autoencoder's decoder, a
    classifier head) do not run.

    The copy is taken when the module returns, so a later in-place operation (an in-place
    ReLU after a conv) cannot change it. Copies go into buffers allocated on the first batch
    and reused for every later one, so no batch allocates its activations anew (fresh
    allocations of the same sizes fragment the heap, and the process grows batch by batch).
    With ``slots=2`` two sets of buffers alternate, batch by batch, so one batch can be
    written while the next one runs.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], pooling=None, slots: int = 1,
                 output_element: Mapping[str, int | str] | None = None, time_layout=None):
        modules = dict(model.named_modules())
        self.pooling = pooling
        self.time_layout, self.batch = time_layout, 0  # clips: outputs keeping time -> (b, T, ...)
        self.timed: set[str] = set()
        self.output_element = dict(output_element or {})
        # layer -> the element kept of a tuple, list or dict output (str of index or key)
        self.elements: dict[str, str] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        self.calls: dict[str, int] = {}
        self.order: list[str] = []  # the layers in the order they ran in this batch
        self.stop_after: str | None = None
        self._buffers: list[dict[str, torch.Tensor]] = [{} for _ in range(slots)]
        self._slot = 0
        self._handles = [modules[name].register_forward_hook(self._hook(name)) for name in layers]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor):
                key = self.output_element.get(name)
                if key is None and isinstance(output, Mapping) and len(output):
                    key = next(iter(output))
                output = pick_element(name, output, key)
                self.elements[name] = str(0 if key is None else key)
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    f"Layer {name!r} returned {type(output).__name__}, not a tensor (or a tuple, "
                    "list or dict holding one); choose another layer."
                )
            output, timed = split_time(output, self.batch, module_layout(module, self.time_layout))
            if timed:
                self.timed.add(name)
                if self.pooling is not None:
                    output = per_step(lambda v: pool(v, self.pooling), output)
            else:
                output = pool(output, self.pooling)
            self.outputs[name] = self._keep(name, output)
            self.calls[name] = self.calls.get(name, 0) + 1
            self.order.append(name)
            if name == self.stop_after:
                raise LastLayerReached

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

    def start_batch(self, batch: int = 0) -> None:
        """Forget the last outputs; this batch's copies go to the next set of buffers."""
        self.batch = batch
        self.outputs.clear()
        self.calls.clear()
        self.order.clear()
        self._slot = (self._slot + 1) % len(self._buffers)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self.outputs.clear()
        self._buffers = [{} for _ in self._buffers]


def _layer_outputs(recorder: Recorder, names: list[str], lenient: bool, warned: set[tuple]):
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
    repeated = [n for n in names if recorder.calls[n] > 1 and ("calls", n) not in warned]
    if repeated:  # shared modules (a ReLU used twice): one warning naming them all
        warned.update(("calls", n) for n in repeated)
        counts = ", ".join(f"{name} ({recorder.calls[name]}x)" for name in repeated)
        warnings.warn(
            f"Modules that ran several times in one forward pass keep their last output: "
            f"{counts}.",
            RuntimeWarning,
            stacklevel=3,
        )
    chosen = recorder.output_element
    defaulted = [n for n in names
                 if n in recorder.elements and n not in chosen and ("element", n) not in warned]
    if defaulted:
        warned.update(("element", n) for n in defaulted)
        kept = ", ".join(f"{n}:{recorder.elements[n]}" for n in defaulted)
        warnings.warn(
            f"Layers {defaulted} return a tuple, list or mapping; kept: {kept} (element 0, "
            "or a mapping's first entry; choose another with output_element={layer: key}, "
            "--layers LAYER:KEY).",
            RuntimeWarning,
            stacklevel=3,
        )
    return names, {name: recorder.outputs[name] for name in names}


def _last_layer(recorder: Recorder, names: list[str]) -> str | None:
    """The layer after which later forward passes can stop: the last one to run in a full
    pass, provided every chosen layer ran exactly once (a module that runs again later, a
    shared ReLU, must see the whole pass to keep its last output)."""
    if not names or any(recorder.calls.get(n) != 1 for n in names):
        return None
    return recorder.order[-1]


class Runner:
    """The model with its hooks and the per-layer options: one batch in, arrays out."""

    def __init__(self, model, names, lenient, pooling, tokens, device, slots=1,
                 output_element=None, token_layout=None, time_layout=None,
                 time_pooling=None) -> None:
        self.model, self.names, self.lenient = model, names, lenient
        self.tokens, self.device, self.token_layout = tokens, device, token_layout
        self.time_pooling = time_pooling
        self.recorder = Recorder(model, names, pooling, slots, output_element, time_layout)
        self.timed: set[str] = set()  # layers written as (b, time, ...)
        self.frame_times: np.ndarray | None = None  # the input frames' times, for clips
        self.warned: set[tuple] = set()  # (kind, layer) already warned about
        self.projections: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Layer -> (b, ...) outputs after token choice and pooling, on the device.

        The outputs live in the recorder's buffers: they stay valid until the batch after
        next (two slots) or the next one (one slot)."""
        self.recorder.start_batch(len(x))
        with torch.inference_mode():
            try:
                self.model(x.to(self.device, non_blocking=True))
            except LastLayerReached:
                pass
            names, outputs = _layer_outputs(self.recorder, self.names, self.lenient, self.warned)
        if self.recorder.stop_after is None:
            self.recorder.stop_after = _last_layer(self.recorder, names)
        self.names, self.lenient = names, False
        features = {}
        for name, out in outputs.items():
            if name in self.recorder.timed:
                out = pool_time(per_step(self._select_tokens, out), self.time_pooling)
            else:
                out = self._select_tokens(out)
            features[name] = out
        if self.time_pooling is None:
            self.timed = self.recorder.timed & set(names)
        return features

    def _select_tokens(self, out: torch.Tensor) -> torch.Tensor:
        return select_tokens(out, self.tokens, self.token_layout)

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
                lead = values.shape[:2] if name in self.timed else values.shape[:1]
                flat = values.reshape(math.prod(lead), -1).float()
                if flat.shape[1] != matrix.shape[0]:
                    raise ValueError(
                        f"Layer {name!r} has {flat.shape[1]} units but its stored projection "
                        f"expects {matrix.shape[0]}."
                    )
                with torch.inference_mode():
                    values = ((flat - mean if mean is not None else flat) @ matrix).reshape(*lead, -1)
            out[name] = values.to("cpu", torch.float32).numpy()
        return out

    def close(self) -> None:
        self.recorder.remove()
