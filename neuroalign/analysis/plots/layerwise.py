"""Layerwise curves: RSA per layer with its noise-ceiling band, any per-layer metric."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from neuroalign.analysis.plots.figures import (
    NOISE_CEILING_COLOR,
    draw_interval,
    layer_axis,
    save_figure,
)

__all__ = [
    "draw_layerwise_metric",
    "draw_layerwise_rsa",
    "plot_layerwise_metric",
    "plot_layerwise_panels",
    "plot_layerwise_rsa",
    "rsa_title",
]


def rsa_title(ds) -> str:
    """What an RSA result compares, in words, from its attributes (as ``rsa_from_file`` sets
    them): the model, the stimuli, the brain data, the RDM and comparison methods."""
    model = ds.attrs.get("model_description") or ds.attrs.get("activations") or "model"
    stimuli = ds.attrs.get("stimulus_set")
    brain = ds.attrs.get("brain_description") or ds.attrs.get("brain", "brain RDMs")
    return "\n".join([
        f"{model}" + (f" on {stimuli}" if stimuli else ""),
        f"vs {brain}",
        f"model RDMs: {ds.attrs.get('rdm_method', '?')} distance; "
        f"compared by {ds.attrs.get('compare_method', '?')}",
    ])


def plot_layerwise_rsa(ds, out, *, show_subjects: bool = True) -> list[Path]:
    """Mean model-brain similarity per layer, with error bars and the noise-ceiling band.

    Error bars are the bootstrap CI (`ci_lo`/`ci_hi`) when present, else the SEM over subjects.
    The title names the model, the stimuli and the brain data (`rsa_title`).

    Args:
        ds: xr.Dataset from `layerwise_rsa` (variables mean, sem, similarity, noise ceiling).
        out: output file (written as .png and .svg).
        show_subjects: also draw each subject's similarity as a small dot.

    Returns:
        [png_path, svg_path].
    """
    _check_rsa(ds)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * ds.sizes["layer"] + 2), 3.6))
    draw_layerwise_rsa(ax, ds, show_subjects=show_subjects)
    ax.set_title(rsa_title(ds), fontsize=8.5, loc="left")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(fig, out)


def _check_rsa(ds) -> None:
    for var in ("mean", "sem", "noise_ceiling_lower", "noise_ceiling_upper"):
        if var not in ds:
            raise ValueError(
                f"ds has no variable {var!r} (has {list(ds.data_vars)}); pass the result of layerwise_rsa"
            )


def draw_layerwise_rsa(ax, ds, *, show_subjects: bool = True) -> None:
    """The RSA panel on ``ax``: mean per layer, its interval, subjects, the labelled ceiling."""
    layers = ds["layer"].values
    mean = ds["mean"].values
    if "ci_lo" in ds and "ci_hi" in ds:
        lo, hi = ds["ci_lo"].values, ds["ci_hi"].values
        err_name = f"{ds.attrs.get('ci', 0.95):.0%} bootstrap CI over stimuli"
    else:
        lo, hi = mean - ds["sem"].values, mean + ds["sem"].values
        err_name = "SEM over subjects"
    x = layer_axis(ax, layers)
    lower, upper = float(ds["noise_ceiling_lower"]), float(ds["noise_ceiling_upper"])
    if np.isfinite(lower) and np.isfinite(upper):
        ax.axhspan(lower, upper, color=NOISE_CEILING_COLOR, alpha=0.35, lw=0, label="noise ceiling")
        for value, name, va in ((upper, "upper", "bottom"), (lower, "lower", "top")):
            ax.text(len(layers) - 0.55, value, f"{name} {value:.2f}", ha="right", va=va,
                    fontsize=6.5, color="0.3", zorder=5)
    if show_subjects and "similarity" in ds and ds.sizes.get("subject", 0) > 1:
        sim = ds["similarity"].transpose("layer", "subject").values
        jitter = np.linspace(-0.12, 0.12, sim.shape[1])
        ax.scatter((x[:, None] + jitter[None, :]).ravel(), sim.ravel(), s=6, color="0.35",
                   alpha=0.6, lw=0, label="subjects", zorder=2)
    one_rdm = ds.sizes.get("subject", 0) == 1
    ax.plot(x, mean, "o-", color="C0", lw=1.5, zorder=4,
            label="one RDM: no SEM or noise ceiling" if one_rdm else "mean over subjects")
    if np.isfinite(lo).any():
        draw_interval(ax, x, lo, hi, "C0", label=err_name)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlim(-0.5, len(layers) - 0.5)
    method = ds.attrs.get("compare_method", "similarity")
    ax.set_ylabel(f"{method} similarity\nwith {ds.attrs.get('brain', 'brain RDMs')}")
    ax.spines[["top", "right"]].set_visible(False)


def plot_layerwise_panels(rsa, metrics, out, *, title: str | None = None) -> list[Path]:
    """One row of panels sharing the layer axis: RSA (as `plot_layerwise_rsa`) beside bars of
    other per-layer results (decorrelation L, probe accuracy …).

    Args:
        rsa: xr.Dataset from `layerwise_rsa` / `rsa_from_file`.
        metrics: [(ds, var, ylabel)], one panel each, drawn as `plot_layerwise_metric` does.
        out: output file (written as .png and .svg).
        title: figure title (default: `rsa_title(rsa)`).

    Returns:
        [png_path, svg_path].
    """
    _check_rsa(rsa)
    width = max(3.0, 0.3 * rsa.sizes["layer"] + 1.4)
    fig, axes = plt.subplots(1, 1 + len(metrics), figsize=(width * (1 + len(metrics)), 3.9),
                             layout="constrained")
    axes = np.atleast_1d(axes)
    draw_layerwise_rsa(axes[0], rsa, show_subjects=True)
    axes[0].legend(fontsize=6, frameon=False, loc="lower left", bbox_to_anchor=(0.0, 1.0),
                   ncols=2)
    for ax, (ds, var, ylabel) in zip(axes[1:], metrics, strict=True):
        draw_layerwise_metric(ax, ds, var, ylabel=ylabel)
    fig.suptitle(title or rsa_title(rsa), fontsize=8.5, x=0.01, ha="left")
    return save_figure(fig, out)


def plot_layerwise_metric(ds, var: str, out, *, ylabel: str | None = None) -> list[Path]:
    """Bars of one per-layer variable (decorrelation L, participation ratio, probe accuracy).

    Error bars: `<var>_lo` / `<var>_hi` when present; else `<name>_std` for `<name>_mean`;
    if `var` has dims besides `layer` (e.g. seed), bars are its mean over them and error bars
    its std.

    Args:
        ds: xr.Dataset with a `layer` dim (from layerwise_decorrelation / layerwise_probe).
        var: the variable to plot.
        out: output file (written as .png and .svg).
        ylabel: axis label (default: var).

    Returns:
        [png_path, svg_path].
    """
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * ds.sizes.get("layer", 1) + 2), 3.4))
    try:
        draw_layerwise_metric(ax, ds, var, ylabel=ylabel)
    except ValueError:
        plt.close(fig)
        raise
    return save_figure(fig, out)


def draw_layerwise_metric(ax, ds, var: str, *, ylabel: str | None = None) -> None:
    """Bars of ``ds[var]`` per layer on ``ax``, with error bars and a title saying what they are."""
    if var not in ds:
        raise ValueError(f"var must be one of {list(ds.data_vars)}; got {var!r}")
    da = ds[var]
    if "layer" not in da.dims:
        raise ValueError(f"variable {var!r} has dims {da.dims}; it needs a 'layer' dim")
    other = [d for d in da.dims if d != "layer"]
    values = da.mean(other).values if other else da.values
    lo = hi = None
    bars = ""
    if f"{var}_lo" in ds and f"{var}_hi" in ds:
        lo, hi = ds[f"{var}_lo"].values, ds[f"{var}_hi"].values
        if ds.attrs.get("n_boot"):
            bars = f"; bars: {ds.attrs.get('ci', 0.95):.0%} bootstrap CI over stimuli"
    else:
        err = None
        if var.endswith("_mean") and f"{var[:-5]}_std" in ds:
            err = ds[f"{var[:-5]}_std"].values
        elif other and np.prod([da.sizes[d] for d in other]) > 1:
            err = da.std(other, ddof=1).values
        if err is not None and np.nanmax(np.abs(err), initial=0) > 0:  # one seed: no spread
            lo, hi = values - err, values + err
    x = layer_axis(ax, ds["layer"].values)
    ax.bar(x, values, color="C0", alpha=0.85)
    if lo is not None:
        draw_interval(ax, x, lo, hi, "k")
    ax.set_ylabel(ylabel or var)
    ax.set_title(f"{ds.attrs.get('metric', var)}{bars}", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
