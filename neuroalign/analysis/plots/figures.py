"""What every figure shares: the Agg backend, atomic PNG + SVG saving, layer axes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["NOISE_CEILING_COLOR", "draw_interval", "layer_axis", "save_figure"]

NOISE_CEILING_COLOR = "0.6"


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
    x = np.arange(len(layers))
    ax.set_xticks(x)
    long = len(layers) > 6 or max(len(str(name)) for name in layers) > 8
    ax.set_xticklabels(
        [str(name) for name in layers], rotation=45 if long else 0, ha="right" if long else "center"
    )
    ax.set_xlabel("layer")
    return x


