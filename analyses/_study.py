"""What the FocusMIM study scripts share: the run cache, the readout and the paper comparison.

- A *condition* is a CPU recipe (``pretrain/cifar10_<recipe>_cpu.toml``) plus overrides. Its
  runs live in a cache folder (``--runs``), one folder per recipe settings + seed + steps
  (:func:`run_folder`), so the four studies share every condition they have in common, and a
  rerun skips finished runs (an interrupted one resumes exactly).
- Every run is trained in stages and keeps a weights-only snapshot ``step_<N>.pt`` at step 0
  (the initial weights), steps/8, steps/4, steps/2 and steps (for ``decorrelation_emerges``).
- The readout is the FocusMIM reference's (:class:`neuroalign.analysis.probes.LinearProbe`,
  ``protocol="focusmim"``): the flattened latent (``encoder.blocks.8``, 128 × 4 × 4 at 32 px)
  of the unmasked CIFAR-10 images → a linear layer, Adam, early stopping on a random 20 % of
  the probe's training images, accuracy on CIFAR-10 test images. Decorrelation L (the
  reference's ``units="all"``) and the participation ratio are computed on the latents of
  the first ``heldout`` of those test images.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from neuroalign import workflows
from neuroalign.training import PretrainConfig, load_config, pretrain
from neuroalign.training.config import RESUMABLE_CHANGES

RECIPES = Path(__file__).resolve().parent.parent / "pretrain"
LATENT = "encoder.blocks.8"  # the conv autoencoder's latent (after the last block's ReLU)
RAW_PIXELS = "raw_pixels"

#: The paper's STL-10 linear-readout test accuracies (%), DESIGN.md §4 (read off its figure,
#: ±0.3). Keys are this repository's condition names.
PAPER_STL10 = {
    "patches": 70.4, "periphery": 68.0, "periphery_nocrop": 56.6, "patches_blur": 56.5,
    "fovea": 50.0, "periphery_blur": 48.9, "autoencoder": 47.0, RAW_PIXELS: 35.9,
}
PAPER_READING_ERROR = 0.3  # percentage points


@dataclass(frozen=True)
class Scale:
    """How big a study runs: pretraining budget, seeds and readout images."""

    steps: int = 400  # the cifar10_*_cpu recipes' budget
    batch_size: int = 128
    max_images: int = 0  # CIFAR-10 training images for pretraining; 0 = all 50,000
    seeds: tuple[int, ...] = (0, 1, 2)
    probe_train_per_class: int = 500  # 5,000 images: the reference's 4,000 + 1,000 split size
    probe_test_per_class: int = 0  # 0 = the whole CIFAR-10 test split (10,000)
    heldout: int = 1000  # test images for decorrelation L and the participation ratio


FULL = Scale()
QUICK = Scale(steps=6, batch_size=32, max_images=512, seeds=(0,), probe_train_per_class=20,
              probe_test_per_class=10, heldout=100)


def parse_args(doc: str, argv=None, extra: dict[str, dict] | None = None
               ) -> tuple[argparse.Namespace, Scale]:
    """The options every study takes (and a study's ``extra`` ones: {flag: add_argument
    keywords}); returns them and the scale they choose."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--runs", type=Path, default=None,
                        help="cache of pretraining runs shared by the studies (default OUT/runs)")
    parser.add_argument("--quick", action="store_true",
                        help="a few-minute version: few steps, 1 seed, small subsets")
    parser.add_argument("--steps", type=int, help="pretraining steps of every run")
    parser.add_argument("--seeds", type=int, nargs="+", help="pretraining (and probe) seeds")
    parser.add_argument("--batch-size", type=int, help="pretraining batch size")
    parser.add_argument("--max-images", type=int, help="pretraining images (0 = all 50,000)")
    parser.add_argument("--probe-train-per-class", type=int)
    parser.add_argument("--probe-test-per-class", type=int, help="0 = the whole test split")
    parser.add_argument("--device", default="cpu")
    for flag, options in (extra or {}).items():
        parser.add_argument(flag, **options)
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    changes = {name: getattr(args, name) for name in
               ("steps", "batch_size", "max_images", "probe_train_per_class", "probe_test_per_class")
               if getattr(args, name) is not None}
    if args.seeds:
        changes["seeds"] = tuple(args.seeds)
    args.runs = args.runs or args.out / "runs"
    return args, replace(scale, **changes)


def condition_config(recipe: str, scale: Scale, seed: int, device: str = "cpu",
                     **overrides) -> PretrainConfig:
    """The settings of ``pretrain/cifar10_<recipe>_cpu.toml`` at ``scale`` with ``overrides``."""
    return load_config(RECIPES / f"cifar10_{recipe}_cpu.toml", steps=scale.steps,
                       batch_size=scale.batch_size, max_images=scale.max_images, seed=seed,
                       device=device, checkpoint_every=max(scale.steps // 8, 1), **overrides)


def snapshot_steps(steps: int) -> list[int]:
    """Steps with a weights-only snapshot: 0, steps/8, steps/4, steps/2, steps."""
    return sorted({0, steps // 8, steps // 4, steps // 2, steps})


def run_folder(runs: Path, name: str, config: PretrainConfig) -> Path:
    """The cache folder of a run: condition name, seed, steps and a hash of every setting that
    changes what is computed."""
    settings = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_CHANGES}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=list).encode())
    return runs / f"{name}_seed{config.seed}_{config.steps}steps_{digest.hexdigest()[:10]}"


def snapshot_path(folder: Path, step: int) -> Path:
    return folder / f"step_{step:06d}.pt"


@functools.lru_cache(maxsize=1)
def _training_images(dataset: str, image_size: int, max_images: int):
    from neuroalign.data.datasets import load_images

    return load_images(dataset, image_size=image_size, max_images=max_images, progress=False)


def pretrained(runs: Path, name: str, config: PretrainConfig) -> tuple[Path, bool]:
    """Train (or find) the run of ``config``; returns its folder and whether it was trained now.

    A folder whose final snapshot exists is skipped; an unfinished one resumes (from its
    last checkpoint; afresh if it was stopped past a snapshot it lacks)."""
    import torch

    from neuroalign.models import create_model
    from neuroalign.training import load_checkpoint, load_model, save_checkpoint

    folder = run_folder(runs, name, config)
    if snapshot_path(folder, config.steps).exists():
        return folder, False
    images = _training_images(config.dataset, config.image_size, config.max_images)
    for step in snapshot_steps(config.steps):
        path = snapshot_path(folder, step)
        if path.exists():
            continue
        if step == 0:  # the initial weights, as the trainer draws them
            torch.manual_seed(config.seed)
            model = create_model(config.model, **config.model_kwargs)
            state: dict[str, Any] = {"config": config.to_dict(), "step": 0}
        else:
            # a run stopped past this snapshot (not by this function) cannot give it back:
            # start afresh (every random choice comes from (seed, step): the same weights)
            latest = folder / "checkpoint.pt"
            afresh = latest.exists() and load_checkpoint(latest)["step"] > step
            checkpoint = pretrain(config, folder, images=images, resume=not afresh,
                                  overwrite=afresh, stop_at=step, progress=False)
            model, state = load_model(checkpoint)
            if state["step"] != step:
                raise RuntimeError(f"{checkpoint} holds step {state['step']}, not {step}.")
        save_checkpoint(path, model=model, optimizer=None, config=state["config"],
                        step=state["step"])
    return folder, True


def train_conditions(conditions: dict[str, tuple[str, dict]], scale: Scale, runs: Path,
                     device: str = "cpu") -> dict[tuple[str, int], Path]:
    """Every (condition, seed) run of ``conditions`` ({name: (recipe, overrides)}), with a
    progress bar; returns {(name, seed): run folder}."""
    from tqdm.auto import tqdm

    folders, trained = {}, 0
    jobs = [(name, seed) for name in conditions for seed in scale.seeds]
    for name, seed in (bar := tqdm(jobs, desc="pretraining runs")):
        bar.set_postfix_str(f"{name} seed {seed}")
        recipe, overrides = conditions[name]
        config = condition_config(recipe, scale, seed, device, **overrides)
        folders[name, seed], new = pretrained(runs, name, config)
        trained += new
    print(f"pretraining: {trained} runs trained, {len(jobs) - trained} found finished in {runs}")
    return folders


def probe_images(split: str, scale: Scale):
    """The readout's CIFAR-10 images of ``split`` (class-balanced subset drawn with seed 0)."""
    per_class = scale.probe_train_per_class if split == "train" else scale.probe_test_per_class
    return _cifar10(split, per_class or None)


@functools.lru_cache(maxsize=2)
def _cifar10(split: str, per_class: int | None):
    from neuroalign.data.cifar import load_cifar10

    return load_cifar10(split, n_per_class=per_class, seed=0)


def latent_files(folder: Path, scale: Scale, device: str = "cpu") -> dict[str, Path]:
    """The final weights' latents of the readout images ({split: activation file}), cached in
    the run folder."""
    from neuroalign.extraction import extract, image_transform
    from neuroalign.training import load_model

    model, state = load_model(snapshot_path(folder, state_steps(folder)), device)
    files = {}
    for split in ("train", "test"):
        per_class = scale.probe_train_per_class if split == "train" else scale.probe_test_per_class
        path = folder / "readout" / f"{split}_{per_class or 'all'}.nc"
        path.parent.mkdir(exist_ok=True)
        files[split] = extract(model, probe_images(split, scale), [LATENT], path,
                               transform=image_transform(32), batch_size=250, device=device,
                               resume=True, progress=False)
    return files


def state_steps(folder: Path) -> int:
    """The last snapshot's step of a run folder."""
    return max(int(p.stem.split("_")[1]) for p in folder.glob("step_*.pt"))


def heldout_metrics(x, scale: Scale) -> dict[str, float]:
    """Decorrelation L (units="all"), participation ratio and the number of units constant
    over the first ``heldout`` rows (dead units count in the reference's L: they lower it)."""
    from neuroalign.analysis.decorrelation import decorrelation

    metrics = decorrelation(np.asarray(x)[: scale.heldout], units="all", mean_abs_r=False)
    return {"decorrelation_L": metrics["L"], "participation_ratio": metrics["participation_ratio"],
            "constant_units": metrics["n_constant_units"]}


def readout(folder: Path, scale: Scale, seed: int, device: str = "cpu") -> dict[str, float]:
    """Readout accuracy, decorrelation L and participation ratio of a run's final latent."""
    files = latent_files(folder, scale, device)
    probe = workflows.probe_from_files(files["train"], files["test"], [LATENT], seeds=(seed,),
                                       protocol="focusmim", device=device)
    latent = dict(workflows.iter_layers(files["test"], [LATENT]))[LATENT]
    return {"accuracy": float(probe["accuracy"].item()), **heldout_metrics(latent, scale)}


def pixel_features(split: str, scale: Scale) -> tuple[np.ndarray, np.ndarray]:
    """Raw pixels in [0, 1], (n, 3 · 32 · 32), channels first as the network sees them."""
    images = probe_images(split, scale)
    x = np.asarray(images.images, np.float32).transpose(0, 3, 1, 2) / 255
    return x.reshape(len(x), -1), np.asarray(images.coords["label"])


def raw_pixel_readout(scale: Scale, seed: int, device: str = "cpu") -> dict[str, float]:
    """The floor: the same readout on the raw pixels."""
    from neuroalign.analysis.probes import layerwise_probe

    train, test = pixel_features("train", scale), pixel_features("test", scale)
    probe = layerwise_probe({RAW_PIXELS: train}, {RAW_PIXELS: test}, seeds=(seed,),
                            protocol="focusmim", device=device)
    return {"accuracy": float(probe["accuracy"].item()), **heldout_metrics(test[0], scale)}


def condition_table(conditions: dict[str, tuple[str, dict]], scale: Scale, runs: Path,
                    device: str = "cpu", raw_pixels: bool = False) -> xr.Dataset:
    """condition × seed: readout accuracy, decorrelation L, participation ratio; with the
    mean and standard deviation over seeds and the paper's STL-10 number per condition."""
    from tqdm.auto import tqdm

    folders = train_conditions(conditions, scale, runs, device)
    names = [*conditions, *([RAW_PIXELS] if raw_pixels else [])]
    values: dict[str, np.ndarray] = {}
    jobs = [(name, seed) for name in names for seed in scale.seeds]
    for name, seed in tqdm(jobs, desc="readout"):
        row = (raw_pixel_readout(scale, seed, device) if name == RAW_PIXELS
               else readout(folders[name, seed], scale, seed, device))
        for key, value in row.items():
            values.setdefault(key, np.full((len(names), len(scale.seeds)), np.nan))
            values[key][names.index(name), scale.seeds.index(seed)] = value
    dims = ("condition", "seed")
    table = xr.Dataset({k: (dims, v) for k, v in values.items()},
                       coords={"condition": names, "seed": list(scale.seeds)})
    ddof = 1 if len(scale.seeds) > 1 else 0
    table["accuracy_mean"] = table["accuracy"].mean("seed")
    table["accuracy_std"] = table["accuracy"].std("seed", ddof=ddof)
    table["paper_stl10_accuracy"] = ("condition", [PAPER_STL10.get(n, np.nan) / 100 for n in names])
    table["run"] = (dims, [[str(folders.get((n, s), "")) for s in scale.seeds] for n in names])
    table.attrs.update(
        pretraining=f"CIFAR-10 train JPEGs, {scale.max_images or 50000} images, 32 px, "
                    f"{scale.steps} steps of batch {scale.batch_size}",
        readout=f"FocusMIM linear readout (LinearProbe protocol='focusmim') on {LATENT}: "
                f"{scale.probe_train_per_class} CIFAR-10 training images a class (20 % held out "
                f"for early stopping); test images: "
                + (f"{scale.probe_test_per_class} a class" if scale.probe_test_per_class
                   else "the whole test split (10,000)"),
        decorrelation=f"FocusMIM L, units='all', on the first {scale.heldout} test images",
        paper="FocusMIM STL-10 test accuracy (DESIGN.md §4), not comparable in absolute terms",
    )
    return table


def paper_orderings(table: xr.Dataset) -> list[str]:
    """For every pair of conditions with a paper number: does the paper's order hold here?

    "holds" / "reversed" compare the means over seeds; with several seeds a difference not
    larger than the combined standard deviation is marked "within the seed spread"."""
    names = [str(n) for n in table.condition.values if str(n) in PAPER_STL10]
    names.sort(key=lambda n: -PAPER_STL10[n])
    mean = table["accuracy_mean"].to_series()
    std = table["accuracy_std"].to_series()
    lines = []
    for a, b in combinations(names, 2):
        if PAPER_STL10[a] - PAPER_STL10[b] <= 2 * PAPER_READING_ERROR:
            continue  # the paper's figure does not order them
        diff = mean[a] - mean[b]
        verdict = "holds" if diff > 0 else "reversed" if diff < 0 else "tie"
        if table.sizes["seed"] > 1 and abs(diff) <= np.hypot(std[a], std[b]):
            verdict += " (within the seed spread)"
        lines.append(f"paper {a} {PAPER_STL10[a]:.1f} > {b} {PAPER_STL10[b]:.1f}; here "
                     f"{100 * mean[a]:.1f} vs {100 * mean[b]:.1f}: {verdict}")
    return lines


def report(table: xr.Dataset, out: Path, stem: str, title: str) -> Path:
    """Write ``<stem>.nc`` and ``<stem>.png``, print the table beside the paper's numbers and
    the orderings; returns the netCDF path."""
    orderings = paper_orderings(table)
    table.attrs["paper_orderings"] = "\n".join(orderings)
    path = workflows.save_results(table, out / f"{stem}.nc")
    plot_conditions(table, out / f"{stem}.png", title)
    print(f"\n{title}: readout accuracy (%, mean ± sd over {table.sizes['seed']} seeds)")
    print(f"{'condition':<18} {'here':>13} {'paper STL-10':>13} {'L':>9} {'PR':>9} {'dead':>6}")
    for name in table.condition.values:
        row = table.sel(condition=name)
        paper = float(row.paper_stl10_accuracy)
        print(f"{name!s:<18} {100 * float(row.accuracy_mean):6.1f} ± {100 * float(row.accuracy_std):4.1f} "
              f"{'—' if np.isnan(paper) else f'{100 * paper:.1f}':>13} "
              f"{float(row.decorrelation_L.mean()):9.3g} {float(row.participation_ratio.mean()):9.3g} "
              f"{float(row.constant_units.mean()):6.0f}")
    if orderings:
        print("\nthe paper's orderings at this scale:\n  " + "\n  ".join(orderings))
    print(f"\nwritten: {path}, {out / f'{stem}.png'}")
    return path


def plot_conditions(table: xr.Dataset, path: Path, title: str) -> None:
    """Accuracy per condition (mean ± sd, seeds as dots) beside the paper's STL-10 number."""
    import matplotlib.pyplot as plt

    names = [str(n) for n in table.condition.values]
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(3 + 1.1 * len(names), 3.8))
    ax = axes[0]
    ax.bar(x - 0.2, 100 * table.accuracy_mean, 0.4, yerr=100 * table.accuracy_std,
           label="here (CIFAR-10)", color="tab:blue", capsize=3)
    for i, name in enumerate(names):
        ax.plot(np.full(table.sizes["seed"], i - 0.2),
                100 * table.accuracy.sel(condition=name), "k.", ms=4)
    ax.bar(x + 0.2, 100 * table.paper_stl10_accuracy, 0.4, label="paper (STL-10)",
           color="tab:grey")
    ax.set_ylabel("linear readout test accuracy (%)")
    ax.legend(fontsize=8)
    ax2 = axes[1]
    ax2.bar(x, table.decorrelation_L.mean("seed"), color="tab:orange")
    ax2.set_ylabel("decorrelation L (units='all')")
    for a in axes:
        a.set_xticks(x, names, rotation=35, ha="right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
