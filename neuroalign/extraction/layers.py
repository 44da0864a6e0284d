"""Which layers to take: module paths of a model, glob patterns over them, the default choice."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence

from torch import nn

__all__ = [
    "BLOCKS",
    "UnknownLayerError",
    "block_groups",
    "every_block",
    "is_default_choice",
    "layer_shapes",
    "list_layers",
    "match_layers",
    "resolve_layers",
]

_GLOB_CHARS = set("*?[")
#: The layer choice meaning every repeated block of the model (see `every_block`).
BLOCKS = "blocks"

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


def block_groups(model: nn.Module) -> dict[str, list[str]]:
    """The model's repeated blocks: {container path: [block paths]}.

    A group is a ``ModuleList`` or ``Sequential`` of at least two children of one class that
    have children of their own (a stack of composite blocks: a ViT's ``blocks``, a ResNet's
    ``layer1`` of BasicBlocks, Hugging Face's ``encoder.layer``); groups inside a block of
    another group are left out.
    """
    groups: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList | nn.Sequential) or len(module) < 2:
            continue
        if any(name.startswith(f"{block}.") for blocks in groups.values() for block in blocks):
            continue
        children = list(module.named_children())
        kinds = {type(child) for _, child in children}
        if len(kinds) == 1 and all(any(child.children()) for _, child in children):
            groups[name] = [f"{name}.{child}" if name else child for child, _ in children]
    return groups


def every_block(model: nn.Module) -> list[str]:
    """Module paths of every block of every group of `block_groups`, in model order."""
    return [block for blocks in block_groups(model).values() for block in blocks]


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
            module below it; expanded in model order), ``"blocks"`` (`BLOCKS`: every repeated
            block, see `every_block`), ``"all"``: every leaf module, or None: the model's own
            ``default_layers()`` when it defines one, else every block, else (a model without
            repeated blocks) every leaf module.

    Returns:
        Module paths without repeats, in the order asked.
    """
    names = list_layers(model)
    if isinstance(layers, str) and layers == "all":
        return _leaf_layers(model)
    if layers is None:
        default_layers = getattr(model, "default_layers", None)
        if callable(default_layers):
            layers = list(default_layers())
        else:
            return every_block(model) or _leaf_layers(model)
    if isinstance(layers, str):
        layers = [layers]
    if list(layers) == [BLOCKS]:  # the keyword wins over a module named "blocks" (timm ViTs)
        blocks = every_block(model)
        if not blocks:
            raise ValueError(f"{type(model).__name__} has no repeated blocks (a ModuleList or "
                             "Sequential of composite modules of one class); name its layers.")
        return blocks
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
    """True for ``"all"``, and for no choice when the model has no ``default_layers()``:
    then modules that forward() never calls are dropped, not an error."""
    if isinstance(layers, str) and layers == "all":
        return True
    return layers is None and not callable(getattr(model, "default_layers", None))


def layer_shapes(model: nn.Module, input_shape: Sequence[int]) -> dict[str, tuple[int, ...] | None]:
    """A dry run: the output shape of every module on one input of zeros.

    Args:
        model: the network (its device is used).
        input_shape: (channels, height, width) of one input.

    Returns:
        {module path: shape of the output extract records by default (element 0 of a tuple
        or list, the first entry of a mapping such as Hugging Face's ModelOutput), or None if
        forward() does not call it or that is no tensor}, in model order.
    """
    import torch

    from neuroalign.extraction.hooks import pick_element

    shapes: dict[str, tuple[int, ...] | None] = dict.fromkeys(list_layers(model))

    def hook(name):
        def record(module, inputs, output):
            try:
                kept = pick_element(name, output, None)  # what extract records by default
            except ValueError:  # an empty tuple or mapping
                kept = None
            shapes[name] = tuple(kept.shape) if isinstance(kept, torch.Tensor) else None
        return record

    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    except (RuntimeError, AssertionError, ValueError) as err:
        what = "×".join(map(str, (1, *input_shape)))
        raise ValueError(f"{type(model).__name__} failed on an input of {what}: "
                         f"{' '.join(str(err).split())[:200]} (give another image size)") from None
    finally:
        for handle in handles:
            handle.remove()
    return shapes
