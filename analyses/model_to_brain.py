"""Model to brain, images: FocusMIM encoders, an untrained network, the autoencoder and any
other model spec against human IT and EVC (RSA) and macaque V4 neurons (encoding models).

    python analyses/model_to_brain.py --out studies/brain            # the FocusMIM models
    python analyses/model_to_brain.py --out studies/brain --quick    # a few minutes
    python analyses/model_to_brain.py --out studies/brain --no-focusmim \\
        --models mae=hf:facebook/vit-mae-base dinov2=hf:facebook/dinov2-base \\
                 vit=timm:vit_base_patch16_224.augreg_in21k_ft_in1k \\
                 'resnet50=torchvision:resnet50@layer1,layer2,layer3,layer4' \\
                 clip=open_clip:ViT-B-32/laion2b_s34b_b79k \\
        --partition mae vit

Models. By default the FocusMIM conditions of ``masking_strategies.py`` — ``periphery``
(masked, ratio 0.8), ``patches`` (random patches, 0.6), ``fovea`` and ``autoencoder`` (no
masking) — taken from the shared run cache (``--runs``; trained there first if missing, at the
studies' scale and the first ``--seeds`` seed), ``untrained`` (the same network's initial
weights) and ``resnet18`` (torchvision's architecture with random weights: no network is
needed); every FocusMIM layer is one of its encoder's 9 blocks, seen at the 32 px the
networks were trained on. ``--models NAME=SPEC[@LAYER,LAYER,...]`` adds any model spec of
docs/compare-models.md (layers: module paths or patterns; default every block). Pretrained
weights from torchvision, timm, Hugging Face or OpenCLIP need a network the first time (or
the weights copied into ``TORCH_HOME`` / ``HF_HOME``); the FocusMIM models need none.

What runs, as one sweep (``neuroalign.sweep``: extraction once per model and stimulus set,
finished tasks skipped on a rerun, ``OUT/results.nc`` and ``OUT/summary.png``):

- layerwise RSA (correlation RDMs, Spearman; rsatoolbox) against human IT (Kriegeskorte 2008:
  4 subjects) and EVC and IT (Cichy 2014: 15 subjects) on the 92 images, each with its noise
  ceiling and a bootstrap CI over stimuli (``--n-boot``);
- encoding models (cross-validated ridge, noise-corrected r) of the Cowley V4 neurons on their
  640 images, beside the neurons' split-half noise ceiling;

and then, from the written files:

- ``rsa_<region>.png``/``.svg``: one figure per brain region in the poster's layout (one panel
  per model, layers on x, similarity with its CI, the noise-ceiling band), and
  ``rsa_peaks.nc`` (each model's best layer per region);
- ``encoding_v4.png``: median noise-corrected r per layer, one line per model;
- ``partition_<region>.nc``/``.png``: unique and shared variance of each region's RDM explained
  by the last layer of the two ``--partition`` models (default ``periphery autoencoder``: the
  masked against the unmasked network);
- ``model_similarity.nc``/``.png``: their layer × layer RSA matrix on the 92 images.

``--quick``: the studies' quick pretraining (6 steps), 3 of the FocusMIM encoders' blocks
(0, 4, 8), resnet18 at 64 px, 20 bootstrap resamples, 20 ceiling splits.

Run time on this machine (AMD EPYC, 2 cores): ``--quick`` ~4 min (measured); the default, with the masking study's runs cached, is the
extraction of 6 models on 732 images and 1,000 bootstrap resamples per layer and region.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _study import parse_args, snapshot_path, state_steps, train_conditions  # noqa: E402
from video_streams import parse_model  # noqa: E402

from neuroalign import sweep, workflows  # noqa: E402

#: The FocusMIM conditions compared with the brain ({name: (recipe, overrides)}).
FOCUSMIM = {name: (name, {}) for name in ("periphery", "patches", "fovea", "autoencoder")}
FOCUSMIM_LAYERS = "encoder.blocks.*"
QUICK_FOCUSMIM_LAYERS = ["encoder.blocks.0", "encoder.blocks.4", "encoder.blocks.8"]
RSA_BRAINS = {"hit": ("kriegeskorte-hit", "kriegeskorte92"),
              "cichy-evc": ("cichy-evc", "cichy92"),
              "cichy-it": ("cichy-it", "cichy92")}
V4 = {"name": "v4", "data": "cowley-v4", "stimuli": "cowley-v4"}
RANDOM_RESNET = {"name": "resnet18", "spec": "torchvision/resnet18",
                 "layers": ["layer1", "layer2", "layer3", "layer4"], "pooling": "avg"}


def model_entry(text: str) -> dict:
    """``NAME=SPEC[@LAYER,LAYER,...]`` (parsed as ``video_streams.py`` does) -> a sweep
    ``[[models]]`` table."""
    choice = parse_model(text)
    return {"name": choice.name, "spec": choice.spec,
            **({"layers": choice.layers} if choice.layers else {})}


def focusmim_models(args, scale) -> list[dict]:
    """The FocusMIM conditions' final weights (pretrained into the run cache if missing) and
    the untrained network, as sweep model tables."""
    seed = scale.seeds[0]
    layers = QUICK_FOCUSMIM_LAYERS if args.quick else FOCUSMIM_LAYERS
    folders = train_conditions(FOCUSMIM, replace(scale, seeds=(seed,)), args.runs, args.device)
    models = [{"name": name, "spec": str(snapshot_path(folder, state_steps(folder))),
               "layers": layers} for (name, _), folder in folders.items()]
    untrained = snapshot_path(folders["periphery", seed], 0)
    return [*models, {"name": "untrained", "spec": str(untrained), "layers": layers}]


def study_sweep(models: list[dict], out: Path, *, n_boot: int, n_splits: int,
                device: str) -> sweep.Sweep:
    """The study's sweep: every model × (RSA on the three regions, encoding of V4)."""
    brains = [{"name": k, "data": data, "stimuli": stim} for k, (data, stim) in RSA_BRAINS.items()]
    brains.append(V4)
    config = {
        "out": str(out.resolve()),
        "extraction": {"batch_size": 64, "device": device},
        "models": models,
        "brains": brains,
        "analyses": [
            {"kind": "rsa", "brains": list(RSA_BRAINS), "compare_method": "spearman",
             "rdm_method": "correlation", "n_boot": n_boot, "seed": 0},
            {"kind": "encoding", "brains": [V4["name"]], "folds": 5, "seed": 0,
             "n_splits": n_splits},
        ],
    }
    return sweep.load_sweep(config)


def _load(path: Path) -> xr.Dataset:
    with xr.open_dataset(path) as ds:
        return ds.load()


def plot_region(results: dict[str, xr.Dataset], region: str, out: Path) -> list[Path]:
    """The poster's layout: one panel per model (layers on x), similarity with its CI and the
    region's noise-ceiling band, a shared y axis."""
    import matplotlib.pyplot as plt

    from neuroalign.analysis.plots.figures import save_figure
    from neuroalign.analysis.plots.layerwise import draw_layerwise_rsa

    widths = [max(results[m].sizes["layer"], 3) for m in results]
    fig, axes = plt.subplots(1, len(results), figsize=(0.42 * sum(widths) + 1.5, 3.6),
                             sharey=True, gridspec_kw={"width_ratios": widths},
                             layout="constrained", squeeze=False)
    for ax, (model, ds) in zip(axes[0], results.items(), strict=True):
        draw_layerwise_rsa(ax, ds, show_subjects=False)
        ax.set_title(model, fontsize=9)
        ax.tick_params(axis="x", labelsize=6)
        ax.set_xlabel("")
        if ax is not axes[0, 0]:
            ax.set_ylabel("")
    fig.supxlabel("layer", fontsize=9)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, frameon=False, loc="outside lower center",
               ncols=len(labels))
    ds = next(iter(results.values()))
    fig.suptitle(f"{region}: {ds.attrs.get('brain_description', ds.attrs.get('brain', ''))}",
                 fontsize=8.5, x=0.01, ha="left")
    return save_figure(fig, out)


def plot_encoding(results: dict[str, xr.Dataset], out: Path) -> list[Path]:
    """Median noise-corrected r of the V4 neurons per layer (relative depth on x), one line per
    model, with the median's 95 % CI over neurons."""
    import matplotlib.pyplot as plt

    from neuroalign.analysis.plots.encoding import median_ci
    from neuroalign.analysis.plots.figures import save_figure

    fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    var = "r_corrected" if "r_corrected" in next(iter(results.values())) else "r"
    for i, (model, ds) in enumerate(results.items()):
        scores = ds[var].transpose("layer", ...).values
        depth = np.linspace(0, 1, len(scores)) if len(scores) > 1 else np.zeros(1)
        med, lo, hi = np.array([median_ci(s[np.isfinite(s)]) for s in scores]).T
        ax.plot(depth, med, "o-", color=f"C{i}", label=model, ms=3)
        ax.fill_between(depth, lo, hi, color=f"C{i}", alpha=0.15, lw=0)
    ax.axhline(1 if var == "r_corrected" else 0, color="0.5", lw=0.8, ls="--")
    ax.set_xlabel("layer (relative depth: first → last)")
    ax.set_ylabel("V4 encoding, median " + ("noise-corrected r" if var == "r_corrected" else "r"))
    fig.legend(fontsize=7, frameon=False, loc="outside right upper")
    ax.spines[["top", "right"]].set_visible(False)
    return save_figure(fig, out)


def rsa_peaks(rsa: dict[str, dict[str, xr.Dataset]]) -> xr.Dataset:
    """model × region: the best layer's mean similarity, its CI, its name, and the noise
    ceiling (the best layer is chosen on the same data: an optimistic summary)."""
    regions, models = list(rsa), list(next(iter(rsa.values())))
    shape = (len(models), len(regions))
    out = {k: np.full(shape, np.nan) for k in ("peak", "ci_lo", "ci_hi", "noise_ceiling_lower",
                                               "noise_ceiling_upper")}
    best = np.empty(shape, dtype=object)
    for j, region in enumerate(regions):
        for i, model in enumerate(models):
            ds = rsa[region][model]
            k = int(np.nanargmax(ds["mean"].values))
            best[i, j] = str(ds["layer"].values[k])
            out["peak"][i, j] = float(ds["mean"][k])
            for var in ("ci_lo", "ci_hi"):
                if var in ds:
                    out[var][i, j] = float(ds[var][k])
            for var in ("noise_ceiling_lower", "noise_ceiling_upper"):
                out[var][i, j] = float(ds[var])
    dims = ("model", "region")
    table = xr.Dataset({k: (dims, v) for k, v in out.items()},
                       coords={"model": models, "region": regions})
    table["best_layer"] = (dims, best.astype(str))
    table.attrs["comment"] = ("best layer chosen on the same data it is scored on: an "
                              "optimistic summary; the per-layer files hold every layer")
    return table


def main(argv=None) -> dict:
    extra = {"--models": dict(nargs="+", default=[], help="NAME=SPEC[@LAYER,LAYER,...] to add"),
             "--no-focusmim": dict(action="store_true",
                                   help="only the --models (no FocusMIM, untrained, resnet18)"),
             "--partition": dict(nargs=2, metavar=("A", "B"),
                                 help="the two models partitioned (default periphery autoencoder)"),
             "--n-boot": dict(type=int, help="bootstrap resamples of stimuli (default 1000; "
                                             "--quick 20)")}
    args, scale = parse_args(__doc__, argv, extra)
    models = [model_entry(text) for text in args.models]
    if not args.no_focusmim:
        resnet = RANDOM_RESNET | ({"image_size": 64} if args.quick else {})
        models = [*focusmim_models(args, scale), resnet, *models]
    if not models:
        raise SystemExit("no models: give --models or leave out --no-focusmim")
    names = [m["name"] for m in models]
    pair = args.partition or (["periphery", "autoencoder"] if not args.no_focusmim else names[:2])
    if len(pair) != 2 or any(p not in names for p in pair):
        raise SystemExit(f"--partition names two of the models {names}; got {pair}")
    n_boot = args.n_boot if args.n_boot is not None else (20 if args.quick else 1000)

    plan = study_sweep(models, args.out, n_boot=n_boot, n_splits=20 if args.quick else 100,
                       device=args.device)
    sweep.run_sweep(plan, scheduler="synchronous")
    merged = sweep.merge_results(plan)
    sweep.plot_sweep(merged, plan.out / "summary.png")

    rsa = {region: {m: _load(plan.task(f"rsa/{m}/{region}").path) for m in names}
           for region in RSA_BRAINS}
    for region, results in rsa.items():
        plot_region(results, region, args.out / f"rsa_{region}.png")
    peaks = rsa_peaks(rsa)
    workflows.save_results(peaks, args.out / "rsa_peaks.nc")

    encoding = {m: _load(plan.task(f"encoding/{m}/{V4['name']}").path) for m in names}
    plot_encoding(encoding, args.out / "encoding_v4.png")

    from neuroalign.analysis.plots import plot_partitioning, plot_rsa_matrix

    files = {m: plan.activation_path(m, "kriegeskorte92") for m in pair}
    partitions = {}
    for region, (data, stimuli) in RSA_BRAINS.items():
        ds = workflows.partition_from_files(data, {
            m: f"{plan.activation_path(m, stimuli)}:{rsa[region][m]['layer'].values[-1]}"
            for m in pair})
        workflows.save_results(ds, args.out / f"partition_{region}.nc")
        plot_partitioning(ds, args.out / f"partition_{region}.png",
                          title=f"{region}: {pair[0]} vs {pair[1]}, last layers")
        partitions[region] = ds
    similarity = workflows.model_similarity_from_files(files[pair[0]], files[pair[1]])
    similarity.attrs.update(a_name=pair[0], b_name=pair[1])
    workflows.save_results(similarity.to_dataset(name="similarity"),
                           args.out / "model_similarity.nc")
    plot_rsa_matrix(similarity, args.out / "model_similarity.png",
                    title=f"{pair[0]} × {pair[1]}: Spearman similarity of layer RDMs (92 images)")

    print_summary(peaks, encoding, partitions, pair)
    return {"sweep": plan, "peaks": peaks, "encoding": encoding, "partitions": partitions,
            "similarity": similarity}


def print_summary(peaks: xr.Dataset, encoding: dict[str, xr.Dataset], partitions, pair) -> None:
    print("\nRSA, best layer per region (mean Spearman over subjects, the layer):")
    print(f"{'model':<14}" + "".join(f"{str(r):>30}" for r in peaks.region.values))
    for model in peaks.model.values:
        row = peaks.sel(model=model)
        print(f"{str(model):<14}" + "".join(
            f"{float(row.peak.sel(region=r)):>9.3f} {str(row.best_layer.sel(region=r).values):>20}"
            for r in peaks.region.values))
    print("noise ceilings: " + ", ".join(
        f"{r} [{float(peaks.noise_ceiling_lower.sel(region=r)[0]):.3f}, "
        f"{float(peaks.noise_ceiling_upper.sel(region=r)[0]):.3f}]" for r in peaks.region.values))
    print("\nV4 encoding, best layer's median noise-corrected r:")
    for model, ds in encoding.items():
        var = "r_corrected" if "r_corrected" in ds else "r"
        med = ds[var].median("neuroid")
        k = int(np.nanargmax(med.values))
        print(f"  {model:<14} {float(med[k]):.3f} ({ds.layer.values[k]})")
    print(f"\nvariance partitioning of each region's RDM, {pair[0]} vs {pair[1]} (last layers):")
    for region, ds in partitions.items():
        parts = ", ".join(f"{p} {float(c):.4f}" for p, c in
                          zip(ds.part.values, ds.commonality.values, strict=True))
        print(f"  {region}: R² {float(ds.total_r2):.4f} = {parts}")


if __name__ == "__main__":
    main()
