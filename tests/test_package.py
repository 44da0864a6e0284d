"""The top-level package: its entry points resolve lazily, and importing it needs no torch."""

import subprocess
import sys

import pytest

import neuroalign


def test_every_entry_point_is_lazy_and_resolves():
    assert set(neuroalign.__all__) == {"__version__", *neuroalign._LAZY}
    for name, module in neuroalign._LAZY.items():
        value = getattr(neuroalign, name)
        assert value is getattr(sys.modules[module], name)
        assert name in dir(neuroalign)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        neuroalign.no_such_name  # noqa: B018


def test_import_neuroalign_imports_no_torch_nor_xarray():
    code = "import sys, neuroalign; print(sorted({'torch', 'xarray'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
