"""``neuroalign demo``: the whole chain on real data, small enough for a laptop CPU.

1. pretrain the FocusMIM conv autoencoder with periphery masking on CIFAR-10 training images;
2. extract every encoder block's activations for the 92 Kriegeskorte stimuli (netCDF);
3. per layer: decorrelation L and mean |r| (on the 92 stimuli), linear-probe accuracy on
   CIFAR-10 (probe trained on activations of training images, scored on test images), and RSA
   against the 4 human-IT subjects (sessions averaged) with the noise ceiling;
4. write ``results.nc``, the layerwise RSA figure ``rsa_layers.png`` and ``layer_results.png``
   (RSA, decorrelation L and probe accuracy side by side, layer on x), print a table and the
   time each stage took.

``--quick`` (:meth:`DemoSettings.first_look`) runs the same chain smaller, for a first look.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import xarray as xr

from neuroalign import workflows
from neuroalign.training.config import PretrainConfig
from neuroalign.variable_attrs import add_variable_attrs

__all__ = ["DEMO_FILES", "DemoSettings", "demo_config", "run_demo"]

STAGES = ("pretraining", "extraction", "analyses", "writing")


@dataclass
class DemoSettings:
    steps: int = 400
    batch_size: int = 128
    lr: float = 1e-3  # the reference's 1e-4 needs its 500 epochs; a short run needs more
    probe_train_per_class: int = 200
    probe_test_per_class: int = 100
    device: str = "auto"
    seed: int = 0
    quick: bool = False  # recorded in results.nc: the numbers are a first look, not the demo's

    @classmethod
    def first_look(cls, **changes) -> DemoSettings:
        """``neuroalign demo --quick``: under a minute on 2 CPU cores. Fewer pretraining steps
        with smaller batches, fewer probe images; the same chain and files."""
        return replace(cls(steps=40, batch_size=64, probe_train_per_class=20,
                           probe_test_per_class=10, quick=True), **changes)


def demo_config(settings: DemoSettings) -> PretrainConfig:
    return PretrainConfig(
        model="conv_mae",
        dataset="cifar10",
        image_size=32,
        masking="periphery",
        mask_ratio=0.8,
        fill="mean",
        loss_region="hidden",
        random_resized_crop=True,
        lr=settings.lr,
        batch_size=settings.batch_size,
        steps=settings.steps,
        seed=settings.seed,
        log_every=10,
        decorrelation_every=20,
        checkpoint_every=max(settings.steps // 4, 1),
        device=settings.device,
    )


DEMO_FILES = ("pretrain/checkpoint.pt", "activations_kriegeskorte92.nc", "results.nc")


def run_demo(
    out: str | Path,
    settings: DemoSettings | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Run the chain into the folder ``out``; returns the paths of the files written.

    A folder that already holds the demo's files is an error unless ``overwrite``."""
    from neuroalign.analysis.plots import plot_layerwise_panels, plot_layerwise_rsa
    from neuroalign.training import pretrain

    settings = settings or DemoSettings()
    out = Path(out)
    existing = [name for name in DEMO_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out} already holds a demo run ({', '.join(existing)}); choose another --out, or "
            "--overwrite (overwrite=True) to run it again."
        )
    out.mkdir(parents=True, exist_ok=True)
    say = print if progress else (lambda *a, **k: None)
    clock = _StageClock()

    say("[1/4] pretraining (periphery masking, ratio 0.8, mean-colour fill, loss on hidden pixels)"
        + (" — quick: a first look, not the demo's numbers" if settings.quick else ""))
    config = demo_config(settings)
    checkpoint = pretrain(config, out / "pretrain", overwrite=overwrite, progress=progress)

    clock.next("[2/4] extracting encoder activations", say)
    activations, probe_files, attrs, device = _extract(checkpoint, config, settings, out,
                                                       overwrite, progress)

    clock.next("[3/4] analysing: decorrelation, linear probe, RSA against human IT", say)
    decorrelation = workflows.decorrelation_from_file(activations)
    probe = workflows.probe_from_files(probe_files["train"], probe_files["test"],
                                       seeds=(settings.seed,), device=str(device),
                                       protocol="standardized-accuracy")
    rsa = workflows.rsa_from_file(activations, "kriegeskorte-hit", compare_method="spearman")

    clock.next("[4/4] writing results", say)
    results = _results(decorrelation, probe, rsa, activations, attrs, settings)
    results_path = workflows.save_results(results, out / "results.nc")
    figures = plot_layerwise_rsa(rsa, out / "rsa_layers.png")
    panels = plot_layerwise_panels(rsa, [
        (decorrelation, "L", "decorrelation L\n(92 stimuli)"),
        (probe, "accuracy_mean", "CIFAR-10 linear-probe\ntest accuracy"),
    ], out / "layer_results.png")
    clock.next(None, say)

    table = workflows.format_table(
        results, ["decorrelation_L", "mean_abs_r", "probe_accuracy", "rsa_hit_spearman", "rsa_hit_sem"])
    say("\n" + table)
    say(f"noise ceiling (human IT, Spearman): lower {float(results.noise_ceiling_lower):.3f}, "
        f"upper {float(results.noise_ceiling_upper):.3f}")
    files = {
        "checkpoint": checkpoint,
        "training log": out / "pretrain" / "log.csv",
        "activations": activations,
        "probe activations (train)": probe_files["train"],
        "probe activations (test)": probe_files["test"],
        "results": results_path,
        **{f"figure ({p.suffix[1:]})": p for p in figures},
        **{f"RSA + L + probe ({p.suffix[1:]})": p for p in panels},
    }
    say("\nfiles:")
    for name, path in files.items():
        say(f"  {name:<26} {path}")
    say("\n" + clock.report())
    return files


class _StageClock:
    """Wall time of each demo stage, measured, for the report at the end."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    def next(self, message: str | None, say) -> None:
        now = time.perf_counter()
        self.seconds[STAGES[len(self.seconds)]] = now - self._start
        self._start = now
        if message:
            say(message)

    def report(self) -> str:
        width = max(map(len, self.seconds))
        lines = [f"  {name:<{width}}  {s:7.1f} s" for name, s in self.seconds.items()]
        total = sum(self.seconds.values())
        return "\n".join(["time per stage (measured):", *lines, f"  {'total':<{width}}  {total:7.1f} s"])


def _extract(checkpoint: Path, config: PretrainConfig, settings: DemoSettings, out: Path,
             overwrite: bool, progress: bool):
    """The encoder's activations: the 92 Kriegeskorte stimuli, and CIFAR-10 for the probe.

    Returns (Kriegeskorte file, {split: CIFAR-10 file}, provenance attrs, device)."""
    from neuroalign.data.cifar import load_cifar10
    from neuroalign.data.stimulus_sets import load_kriegeskorte92
    from neuroalign.extraction import extract, image_transform
    from neuroalign.provenance import checkpoint_attrs
    from neuroalign.training import load_model
    from neuroalign.training.trainer import resolve_device

    device = resolve_device(settings.device)
    model, state = load_model(checkpoint, device)
    transform = image_transform(config.image_size)
    attrs = {
        **checkpoint_attrs(checkpoint, state),
        "recipe": "neuroalign demo",
        "input_size": config.image_size,
        "normalisation": "none (pixels in [0, 1])",
    }
    activations = extract(model, load_kriegeskorte92(), None,
                          out / "activations_kriegeskorte92.nc", transform=transform,
                          batch_size=92, device=device, attrs=attrs, overwrite=overwrite,
                          progress=progress)
    probe_files = {}
    (out / "probe").mkdir(exist_ok=True)
    for split, per_class in (("train", settings.probe_train_per_class),
                             ("test", settings.probe_test_per_class)):
        cifar = load_cifar10(split, n_per_class=per_class, seed=settings.seed)
        probe_files[split] = extract(
            model, cifar, None, out / "probe" / f"activations_cifar10_{split}.nc",
            transform=transform, batch_size=250, device=device, attrs=attrs, overwrite=overwrite,
            progress=progress)
    return activations, probe_files, attrs, device


def _results(decorrelation: xr.Dataset, probe: xr.Dataset, rsa: xr.Dataset, activations: Path,
             attrs: dict, settings: DemoSettings) -> xr.Dataset:
    """The per-layer table the demo writes to results.nc."""
    results = xr.Dataset(
        {
            "decorrelation_L": decorrelation["L"],
            "mean_abs_r": decorrelation["mean_abs_r"],
            "participation_ratio": decorrelation["participation_ratio"],
            "probe_accuracy": probe["accuracy_mean"],
            "rsa_hit_spearman": rsa["mean"],
            "rsa_hit_sem": rsa["sem"],
            "rsa_hit_per_subject": rsa["similarity"],
            "noise_ceiling_lower": rsa["noise_ceiling_lower"],
            "noise_ceiling_upper": rsa["noise_ceiling_upper"],
        },
        attrs={
            "description": "neuroalign demo: per-layer metrics of a periphery-masked conv MIM encoder"
                           + (" (--quick: a first look, fewer steps and probe images)"
                              if settings.quick else ""),
            "activations": str(activations),
            "rsa_brain": "kriegeskorte-hit (4 subjects, 2 sessions averaged)",
            "rsa_rdm_method": rsa.attrs.get("rdm_method", "correlation"),
            "rsa_compare_method": rsa.attrs.get("compare_method", "spearman"),
            "probe": f"LinearProbe on flattened activations, {probe.attrs['n_train']} CIFAR-10 "
                     f"training images, scored on {probe.attrs['n_test']} test images",
            "decorrelation": "FocusMIM L = (1/D) sum_{i!=j} C_ij^2 over the 92 stimuli",
            **{k: v for k, v in attrs.items() if k != "checkpoint"},
        },
    )
    hit = "with human IT (Kriegeskorte et al. 2008)"
    return add_variable_attrs(results, {
        "decorrelation_L": ("decorrelation L of the layer over the 92 stimuli (FocusMIM)", "1"),
        "probe_accuracy": ("CIFAR-10 linear-probe test accuracy (fraction correct)", "1"),
        "rsa_hit_spearman": (f"Spearman similarity of the layer RDM {hit}, mean over subjects",
                             "1"),
        "rsa_hit_sem": (f"standard error over subjects of the Spearman similarity {hit}", "1"),
        "rsa_hit_per_subject": (f"Spearman similarity of the layer RDM {hit}, each subject",
                                "1"),
    })
