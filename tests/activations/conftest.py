"""Fixtures comparing two activation files: every variable of every group, and the attributes."""

import netCDF4
import numpy as np
import pytest

# attributes that say when or where a file was written, not what it holds
VOLATILE = {"created", "resumed_from", "presentations_complete", "device", "torch_version"}


def file_contents(path):
    """{variable path: values} and {attribute path: value} of a netCDF file."""
    values, attrs = {}, {}

    def walk(group, prefix):
        for key in group.ncattrs():
            if key not in VOLATILE:
                value = group.getncattr(key)
                attrs[prefix + key] = value.item() if isinstance(value, np.generic) else value
        for name, var in group.variables.items():
            values[prefix + name] = np.asarray(var[:])
            for key in var.ncattrs():
                attrs[f"{prefix}{name}.{key}"] = str(var.getncattr(key))
        for name, sub in group.groups.items():
            walk(sub, f"{prefix}{name}/")

    with netCDF4.Dataset(path) as ds:
        walk(ds, "")
    return values, attrs


def assert_same_contents(a, b):
    (va, aa), (vb, ab) = file_contents(a), file_contents(b)
    assert aa == ab
    assert va.keys() == vb.keys()
    for key in va:
        np.testing.assert_array_equal(va[key], vb[key], err_msg=key)


@pytest.fixture
def contents_of():
    return file_contents


@pytest.fixture
def same_contents():
    return assert_same_contents
