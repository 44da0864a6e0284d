"""CF-style ``long_name`` and ``units`` of the variables in results datasets.

So that ``ncdump -h results.nc`` explains the file. Names are looked up by variable name; a
long name may use the dataset's attributes (``{compare_method}``). Units follow CF: ``"1"`` for
dimensionless numbers and counts.
"""

from __future__ import annotations

from collections.abc import Mapping

import xarray as xr

__all__ = ["VARIABLE_ATTRS", "add_variable_attrs"]

_SIM = "{compare_method} similarity of the layer RDM with the brain RDM"

#: variable name -> (long_name, units or None); shared by every results dataset.
VARIABLE_ATTRS: dict[str, tuple[str, str | None]] = {
    # decorrelation
    "L": ("decorrelation L = (1/D) sum_{{i!=j}} C_ij^2 of z-scored units (FocusMIM)", "1"),
    "mean_abs_r": ("mean absolute correlation over pairs of units", "1"),
    "participation_ratio": ("participation ratio of the correlation matrix of z-scored units "
                            "(effective dimensionality, D / (1 + L))", "1"),
    "n_units": ("number of units in the layer", "1"),
    "n_constant_units": ("number of units with zero variance (left out)", "1"),
    # probe
    "accuracy": ("linear-probe test accuracy (fraction correct)", "1"),
    "accuracy_mean": ("linear-probe test accuracy, mean over probe seeds", "1"),
    "accuracy_std": ("linear-probe test accuracy, standard deviation over probe seeds", "1"),
    # RSA
    "similarity": (_SIM + " of each subject", "1"),
    "mean": (_SIM + ", mean over subjects", "1"),
    "sem": (_SIM + ", standard error of the mean over subjects", "1"),
    "noise_ceiling_lower": ("lower bound of the noise ceiling ({compare_method})", "1"),
    "noise_ceiling_upper": ("upper bound of the noise ceiling ({compare_method})", "1"),
    "ci_lo": ("lower bound of the {ci} interval of the mean similarity", "1"),
    "ci_hi": ("upper bound of the {ci} interval of the mean similarity", "1"),
    "diff_ci_lo": ("layer pair test: lower bound of the {ci} interval of the difference", "1"),
    "diff_ci_hi": ("layer pair test: upper bound of the {ci} interval of the difference", "1"),
    "difference": ("difference of mean similarity, layer_a minus layer_b", "1"),
    "p_value": ("p-value of the difference of layer_a and layer_b", "1"),
    # variance partitioning
    "r2": ("R squared of the brain RDM regressed on a subset of the models", "1"),
    "commonality": ("part of the variance of the brain RDM explained (commonality)", "1"),
    "fraction": ("commonality as a fraction of the total R squared", "1"),
    "total_r2": ("R squared of the brain RDM regressed on all models", "1"),
    # model vs model
    "cka": ("linear centred kernel alignment of layer_a and layer_b", "1"),
    # coordinates
    "layer": ("layer (module path)", None),
    "layer_a": ("layer of the first model (module path)", None),
    "layer_b": ("layer of the second model (module path)", None),
    "subject": ("subject of the brain data", None),
    "seed": ("probe seed", None),
    "part": ("part of the explained variance: a model's unique part or models' shared part", None),
    "n_models": ("number of models sharing the part", "1"),
    "subset": ("subset of the models in the regression", None),
}

_INTERVAL = {"_lo": "lower bound of the {ci} interval of ", "_hi": "upper bound of the {ci} interval of "}


def _lookup(name: str, table: Mapping[str, tuple[str, str | None]]):
    if name in table:
        return table[name]
    if name.startswith("diff_"):  # rsa_from_file's layer-pair tests
        found = _lookup(name[5:], table)
        return found and (f"layer pair test: {found[0]}", found[1])
    for suffix, prefix in _INTERVAL.items():
        base = name.removesuffix(suffix)
        if name.endswith(suffix) and base in table:
            long_name, units = table[base]
            return prefix + long_name, units
    return None


def add_variable_attrs(ds: xr.Dataset, extra: Mapping[str, tuple[str, str | None]] | None = None,
                       ) -> xr.Dataset:
    """Set ``long_name`` (and ``units``) on every variable and coordinate ``ds`` has a name
    for, in place; ``extra`` adds or overrides names (e.g. the demo's renamed variables).
    Returns ``ds``."""
    table = {**VARIABLE_ATTRS, **(extra or {})}
    fields = {"compare_method": ds.attrs.get("compare_method", "spearman"),
              "ci": f"{float(ds.attrs.get('ci', 0.95)):.0%} bootstrap"}
    for name in [*ds.data_vars, *ds.coords]:
        found = _lookup(str(name), table)
        if found is None:
            continue
        long_name, units = found
        attrs = ds.variables[name].attrs
        attrs["long_name"] = long_name.format(**fields)
        if units is not None:
            attrs["units"] = units
    return ds
