"""Every neuroalign name the docs use exists: modules, functions, their keyword arguments, and
the CLI's sub-commands and options. Docs drift from code silently; this makes it loud."""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import pkgutil
import re
import shlex
from pathlib import Path

import pytest

import neuroalign
from neuroalign.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "pretrain").glob("*.md"),
     *(ROOT / "analyses").glob("*.md")]
)
# Written as calls in the docs but not neuroalign functions: netCDF variables of the activation
# file (`activation(presentation, feature)`), MATLAB/R and other libraries' functions, and the
# methods a model or a stimulus source implements (`default_layers()`, `item(i)`).
FOREIGN = {
    "default_layers", "training_loss", "after_optimizer_step", "item",
    "activation", "projection", "mean", "explained_variance", "permute", "ncread", "ncvar_get",
    "nc_open", "open_datatree", "open_dataset", "calc_rdm", "compare", "Linear", "GaussianBlur",
    "RandomResizedCrop", "AutoModel", "Dataset", "RDMs", "torch.no_grad", "ndims",
}


def _public_names() -> dict[str, object]:
    """name -> object for every name in the ``__all__`` of a neuroalign module."""
    names: dict[str, object] = {}
    for info in pkgutil.walk_packages(neuroalign.__path__, "neuroalign."):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", ()):
            names.setdefault(name, getattr(module, name))
    for name in getattr(neuroalign, "__all__", ()):
        names.setdefault(name, getattr(neuroalign, name))
    return names


PUBLIC = _public_names()


def _resolve(dotted: str):
    """Import the longest module prefix of ``dotted`` and getattr the rest."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)  # AttributeError: the doc names something missing
        return obj
    raise ModuleNotFoundError(dotted)


def _check_keywords(obj, keywords: list[str], where: str) -> None:
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    missing = [k for k in keywords if k not in params]
    assert not missing, f"{where}: {getattr(obj, '__name__', obj)} has no parameter {missing}"


def _inline_spans(text: str) -> list[str]:
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.findall(r"`([^`\n]+)`", text)


def _code_blocks(text: str) -> list[tuple[str, str]]:
    return re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S)


def _call_keywords(args: str) -> list[str]:
    return re.findall(r"(?:^|[,(]\s*)([a-z_]\w*)=", args)


def _check_span(span: str, where: str) -> None:
    m = re.match(r"^(neuroalign(?:\.\w+)+)(?:\((.*)\))?", span)
    if m:
        obj = _resolve(m.group(1))
        if m.group(2):
            _check_keywords(obj, _call_keywords(m.group(2)), where)
        return
    m = re.match(r"^([A-Za-z_]\w*)\((.*)\)$", span)
    if m and m.group(1) not in FOREIGN:
        assert m.group(1) in PUBLIC, f"{where}: `{span}` names {m.group(1)!r}, not in any __all__"
        _check_keywords(PUBLIC[m.group(1)], _call_keywords(m.group(2)), where)


def _check_python(code: str, where: str) -> None:
    tree = ast.parse(code)
    imported: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("neuroalign"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{where}: {node.module} has no {alias.name}"
                imported[alias.asname or alias.name] = getattr(module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("neuroalign"):
                    importlib.import_module(alias.name)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        obj = None
        if isinstance(node.func, ast.Name) and node.func.id in imported:
            obj = imported[node.func.id]
        elif isinstance(node.func, ast.Attribute):
            dotted = ast.unparse(node.func)
            if dotted.startswith("neuroalign."):
                obj = _resolve(dotted)
        if obj is not None:
            _check_keywords(obj, [k.arg for k in node.keywords if k.arg], where)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _check_command(line: str, where: str) -> None:
    words = shlex.split(line, comments=True)
    if not words or words[0] != "neuroalign" or len(words) < 2 or words[1].startswith("-"):
        return
    commands = _subparsers(build_parser())
    assert words[1] in commands, f"{where}: no sub-command `neuroalign {words[1]}`"
    options = {s for a in commands[words[1]]._actions for s in a.option_strings}
    for word in words[2:]:
        flag = word.split("=", 1)[0]
        if flag.startswith("--"):
            assert flag in options, f"{where}: `neuroalign {words[1]}` has no option {flag}"


def _shell_lines(code: str):
    for line in code.replace("\\\n", " ").splitlines():
        for part in re.split(r"&&|\|\||;|\|", line):
            part = part.strip()
            while re.match(r"^[A-Z_]+=\S+\s", part):  # VAR=value before the command
                part = part.split(None, 1)[1]
            if part.startswith("python -m neuroalign "):
                part = "neuroalign " + part[len("python -m neuroalign "):]
            yield part


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_names_in_docs_exist(page):
    text = page.read_text(encoding="utf-8")
    where = str(page.relative_to(ROOT))
    for span in _inline_spans(text):
        _check_span(span.strip(), where)
        if span.startswith("neuroalign "):
            _check_command(span, where)
    for lang, code in _code_blocks(text):
        if lang == "python":
            _check_python(code, where)
        elif lang in ("bash", "sh", "console", ""):
            for line in _shell_lines(code):
                _check_command(line, where)


def test_the_checker_catches_a_wrong_name():
    with pytest.raises(AssertionError, match="no option --no-such-flag"):
        _check_command("neuroalign extract --no-such-flag 1", "here")
    with pytest.raises(AttributeError):
        _check_span("neuroalign.extraction.no_such_function", "here")
    with pytest.raises(AssertionError, match="no parameter"):
        _check_python("from neuroalign.extraction import extract\nextract(nonsense=1)", "here")
