"""Which layers to take: module paths of a model, glob patterns over them, the default choice."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence

from torch import nn

__all__ = ["UnknownLayerError", "list_layers", "match_layers", "resolve_layers", "is_default_choice"]

_GLOB_CHARS = set("*?[")

#: Where an unknown-layer error points Python users; the CLI points to ``neuroalign layers``.
PYTHON_HINT = ("neuroalign.extraction.list_layers(model) (or [n for n, _ in "
               "model.named_modules()])")


class UnknownLayerError(ValueError):
    """A layer name or pattern that matches no module of the model.

    Attributes:
        model_name: the model's class name.
        layer: the name asked for.
        close: the closest module names.
    """

    def __init__(self, model_name: str, layer: str, close: list[str], hint: str = PYTHON_HINT):
        self.model_name, self.layer, self.close = model_name, layer, close
        near = f" Closest module names: {close}." if close else ""
        super().__init__(f"{model_name} has no module matching {layer!r}.{near} List them with "
                         f"{hint}.")

    def with_hint(self, hint: str) -> UnknownLayerError:
        """The same error pointing to another way of listing the layers (e.g. a command)."""
        return UnknownLayerError(self.model_name, self.layer, self.close, hint)


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
        default_layers = getattr(model, "default_layers", None)
        if callable(default_layers):
            layers = list(default_layers())
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
            raise UnknownLayerError(type(model).__name__, layer, close)
        resolved.extend(m for m in matches if m not in resolved)
    return resolved


def is_default_choice(model: nn.Module, layers) -> bool:
    """True when ``layers`` means every leaf module (no choice, no ``default_layers()``): then
    leaves that forward() never calls are dropped, not an error."""
    return (layers is None or layers == "all") and not callable(
        getattr(model, "default_layers", None)
    )
