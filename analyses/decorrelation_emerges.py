"""Decorrelation emerges: L and the participation ratio of the latent over pretraining.

    python analyses/decorrelation_emerges.py --out studies/decorrelation           # full
    python analyses/decorrelation_emerges.py --out studies/decorrelation --quick   # a few minutes

FocusMIM's Fig. 4d: no decorrelation term in the loss, yet the latent decorrelates as masked
pretraining proceeds. For each masking condition of ``masking_strategies.py`` (periphery,
patches, fovea filter, no masking; shared through the run cache) and seed, the weights-only
snapshots every run keeps (step 0 = the initial weights, steps/8, steps/4, steps/2, steps) are
extracted with ``neuroalign.extraction.extract_checkpoints`` on a fixed set of held-out
CIFAR-10 test images (the first ``heldout`` of the readout's test images, 1,000 in the full
version), and the latent's decorrelation L (the reference's convention: ``units="all"``) and
participation ratio of the correlation matrix are computed from those files, with the number
of units constant over those images (dead ReLUs: the reference's L divides by every unit, so
dead units lower it).

Writes ``decorrelation_emerges.nc`` (condition × seed × step: decorrelation_L,
participation_ratio, constant_units; their means over seeds) and ``decorrelation_emerges.png`` (both over
steps, one line per condition, seeds as thin lines).

Run time on this machine (2 cores shared with 4 other jobs): the pretraining is that of
``masking_strategies.py`` (1.5–7 h in full, nothing new when it has run); the evaluation is 5
snapshots × 12 runs of 1,000 images, ~3 min (1 min measured for 4 runs). ``--quick`` ~1 min.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from _study import (
    LATENT,
    heldout_metrics,
    parse_args,
    probe_images,
    snapshot_path,
    snapshot_steps,
    train_conditions,
)
from masking_strategies import CONDITIONS
from tqdm.auto import tqdm

from neuroalign import workflows
from neuroalign.activations import open_activation_index
from neuroalign.extraction import extract_checkpoints


def heldout_images(scale):
    """The first ``heldout`` readout test images (fixed, whatever the run)."""
    images = probe_images("test", scale)
    return images.subset(np.arange(min(scale.heldout, len(images))))


def main(argv=None):
    args, scale = parse_args(__doc__, argv)
    folders = train_conditions(CONDITIONS, scale, args.runs, args.device)
    steps = snapshot_steps(scale.steps)
    stimuli = heldout_images(scale)
    shape = (len(CONDITIONS), len(scale.seeds), len(steps))
    values: dict[str, np.ndarray] = {}
    for (name, seed), folder in tqdm(folders.items(), desc="snapshots"):
        out = folder / f"decorrelation_heldout{len(stimuli)}"
        index = extract_checkpoints([snapshot_path(folder, s) for s in steps], stimuli, [LATENT],
                                    out, device=args.device, resume=True, progress=False,
                                    batch_size=250)
        latents = open_activation_index(index, LATENT)
        for i in range(latents.sizes["checkpoint"]):
            x = latents["activation"].isel(checkpoint=i).values
            step = int(latents["step"].values[i])
            where = list(CONDITIONS).index(name), scale.seeds.index(seed), steps.index(step)
            for key, value in heldout_metrics(x, scale).items():
                values.setdefault(key, np.full(shape, np.nan))[where] = value
    dims = ("condition", "seed", "step")
    table = xr.Dataset({k: (dims, v) for k, v in values.items()},
                       coords={"condition": list(CONDITIONS), "seed": list(scale.seeds),
                               "step": steps})
    for key in list(values):
        table[f"{key}_mean"] = table[key].mean("seed")
    table.attrs.update(
        pretraining=f"CIFAR-10 train JPEGs, {scale.max_images or 50000} images, 32 px, "
                    f"{scale.steps} steps of batch {scale.batch_size}; no decorrelation term",
        decorrelation=f"FocusMIM L (units='all') and participation ratio of {LATENT} on "
                      f"{len(stimuli)} held-out CIFAR-10 test images",
    )
    path = workflows.save_results(table, args.out / "decorrelation_emerges.nc")
    plot(table, args.out / "decorrelation_emerges.png")
    print("\ndecorrelation L (units='all', mean over seeds) at each step:")
    print(table["decorrelation_L_mean"].to_pandas().round(3).to_string())
    print("\nparticipation ratio (mean over seeds):")
    print(table["participation_ratio_mean"].to_pandas().round(2).to_string())
    print("\nunits constant over the held-out images (of 2,048; mean over seeds):")
    print(table["constant_units_mean"].to_pandas().round(1).to_string())
    print(f"\nwritten: {path}, {args.out / 'decorrelation_emerges.png'}")
    return path


def plot(table: xr.Dataset, path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, label in zip(axes, ("decorrelation_L", "participation_ratio"),
                              ("decorrelation L (units='all')", "participation ratio"),
                              strict=True):
        for i, name in enumerate(table.condition.values):
            colour = f"C{i}"
            for seed in table.seed.values:
                ax.plot(table.step, table[key].sel(condition=name, seed=seed), color=colour,
                        lw=0.6, alpha=0.5)
            ax.plot(table.step, table[f"{key}_mean"].sel(condition=name), "o-", color=colour,
                    label=str(name))
        ax.set_xlabel("pretraining step")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.suptitle("Latent decorrelation over pretraining (no decorrelation term in the loss)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
