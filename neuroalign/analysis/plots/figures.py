"""What every figure shares: the Agg backend, atomic PNG + SVG saving, layer axes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["NOISE_CEILING_COLOR", "draw_interval", "file_mode", "layer_axis", "save_figure"]

NOISE_CEILING_COLOR = "0.6"


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file: 0o666 less the umask.

    ``tempfile.mkstemp`` creates 0o600 files; outputs written through one are set to this, so
    figures get the same permissions as the netCDF files beside them."""
    umask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask


def save_figure(fig, out) -> list[Path]:
    """Writes fig as PNG (150 dpi) and SVG next to `out`, atomically, and closes it.

    Args:
        fig: matplotlib Figure.
        out: target; its suffix is replaced by .png and .svg.

    Returns:
        [png_path, svg_path].
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for fmt in ("png", "svg"):
            target = out.with_suffix(f".{fmt}")
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            try:
                os.fchmod(fd, file_mode())
                with os.fdopen(fd, "wb") as f:
                    fig.savefig(f, format=fmt, dpi=150, bbox_inches="tight")
                os.replace(tmp, target)
            except BaseException:
                os.unlink(tmp)
                raise
            written.append(target)
    finally:
        plt.close(fig)
    return written


def draw_interval(ax, x, lo, hi, color, label=None) -> None:
    """Vertical intervals [lo, hi] with caps (a bootstrap interval need not contain the mean)."""
    ax.vlines(x, lo, hi, color=color, lw=1.2, label=label, zorder=3)
    ax.scatter(
        np.concatenate([x, x]), np.concatenate([lo, hi]), marker="_", s=40, color=color, zorder=3
    )


def layer_axis(ax, layers) -> np.ndarray:
    """Layer ticks on the x axis; a dotted prefix common to every layer (``encoder.blocks.``)
    goes into the axis label once instead of onto every tick."""
    names = [str(name) for name in layers]
    prefix = os.path.commonprefix(names) if len(names) > 1 else ""
    prefix = prefix[: prefix.rfind(".") + 1]
    shown = [name[len(prefix):] for name in names]
    x = np.arange(len(names))
    ax.set_xticks(x)
    long = len(shown) > 6 and max(map(len, shown)) > 3 or max(map(len, shown)) > 8
    ax.set_xticklabels(shown, rotation=45 if long else 0, ha="right" if long else "center",
                       rotation_mode="anchor" if long else "default")
    ax.set_xlabel(f"layer ({prefix}*)" if prefix else "layer")
    return x
