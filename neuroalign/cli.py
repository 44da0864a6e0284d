"""The ``neuroalign`` command: one sub-command per stage of the data flow."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
neuroalign: pretrain foveal masked-image-modeling encoders, extract their layer activations
to netCDF, and compare them with brains (decorrelation, linear probes, RSA).

Real data sets are read from the folder named by the environment variable NEUROALIGN_DATA
(or downloaded and checked by SHA-256 where there is a network)."""


def _add_demo(sub):
    p = sub.add_parser(
        "demo", help="run the whole chain on real data (pretrain → extract → analyse)",
        description="Pretrain the FocusMIM conv autoencoder with periphery masking on CIFAR-10, "
        "extract its encoder blocks for the 92 Kriegeskorte stimuli, and compute per layer the "
        "decorrelation metric, a CIFAR-10 linear-probe accuracy and RSA against human IT with "
        "the noise ceiling. Writes activations (netCDF), results.nc and a figure into --out.")
    p.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    p.add_argument("--steps", type=int, default=400, help="pretraining steps (default 400, ~3 min on 2 CPU cores)")
    p.add_argument("--batch-size", type=int, default=128, help="pretraining batch size (default 128)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--probe-train-per-class", type=int, default=200,
                   help="CIFAR-10 training images per class for the linear probe (default 200)")
    p.add_argument("--probe-test-per-class", type=int, default=100,
                   help="CIFAR-10 test images per class the probe is scored on (default 100)")
    p.add_argument("--device", default="auto", help="'auto' (GPU when there is one), 'cpu', 'cuda', 'cuda:1' …")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--overwrite", action="store_true", help="run again into an --out that holds a demo run")
    p.set_defaults(run=_run_demo)


def _run_demo(args):
    from neuroalign.demo import DemoSettings, run_demo

    run_demo(args.out, DemoSettings(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        probe_train_per_class=args.probe_train_per_class,
        probe_test_per_class=args.probe_test_per_class, device=args.device, seed=args.seed),
        overwrite=args.overwrite)


def _add_pretrain(sub):
    p = sub.add_parser(
        "pretrain", help="pretrain a model from a TOML recipe",
        description="Pretrain by masked-image modeling as a recipe says (see pretrain/*.toml). "
        "Writes checkpoint.pt (resumable) and log.csv (loss, learning rate, latent "
        "decorrelation, images/s) into --out; a folder holding a checkpoint needs --resume "
        "(continue it) or --overwrite (start afresh). Several "
        "GPUs or nodes: torchrun --nproc_per_node N -m neuroalign pretrain … "
        "(batch_size is the global batch: the result equals the single-process run).")
    p.add_argument("recipe", type=Path, help="TOML recipe (keys of neuroalign.training.PretrainConfig)")
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument("--steps", type=int, help="override the recipe's number of steps")
    p.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    p.add_argument("--device", help="override the device ('auto', 'cpu', 'cuda' …)")
    p.add_argument("--seed", type=int, help="override the recipe's seed")
    p.add_argument("--lr", type=float, help="override the recipe's learning rate")
    p.add_argument("--max-images", type=int, help="train on the first N images only")
    p.add_argument("--data-path", help="image folder (dataset = 'folder') or STL-10 root")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (GPU); --no-amp turns it off")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (faster convolutions on recent GPUs)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run whose checkpoint --out holds (same recipe)")
    again.add_argument("--overwrite", action="store_true",
                       help="start afresh even if --out holds a checkpoint (it is replaced)")
    p.set_defaults(run=_run_pretrain)


def _run_pretrain(args):
    from neuroalign.training import load_config, pretrain

    config = load_config(args.recipe, steps=args.steps, batch_size=args.batch_size,
                         device=args.device, seed=args.seed, lr=args.lr, max_images=args.max_images,
                         data_path=args.data_path, amp=args.amp, channels_last=args.channels_last,
                         compile=args.compile)
    path = pretrain(config, args.out, resume=args.resume, overwrite=args.overwrite)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one report
        print(f"checkpoint: {path}\nlog:        {args.out / 'log.csv'}")


def _model_from_arg(name: str, device, seed: int = 0):
    """A checkpoint path, or a model name built with random weights seeded by ``seed``;
    returns (model, attrs, image_size)."""
    from neuroalign.models import create_model
    from neuroalign.provenance import checkpoint_attrs
    from neuroalign.training import load_model

    if Path(name).is_file():
        model, state = load_model(name, device)
        return model, checkpoint_attrs(name, state), int(state["config"]["image_size"])
    model = create_model(name, seed=seed)
    attrs = {"model": name, "weights": f"random initialisation, seed {seed}"}
    return model.to(device).eval(), attrs, None


def _add_extract(sub):
    p = sub.add_parser(
        "extract", help="extract layer activations of a model for a stimulus set into netCDF",
        description="Run a model over stimuli and write the chosen layers' activations to one "
        "netCDF-4 file (a group per layer, 'presentation' dimension with stimulus ids). The "
        "file appears under its name only when complete.")
    p.add_argument("model", help="a neuroalign checkpoint (.pt), a registered model name, torchvision/<name> "
                                 "or timm/<name> (random weights)")
    p.add_argument("--stimuli", required=True,
                   help="a registered stimulus set (kriegeskorte92, cichy92, algonauts78, "
                        "cifar10-train, cifar10-test) or a folder of images")
    p.add_argument("--out", required=True, type=Path, help="the activation file to write (.nc)")
    p.add_argument("--layers", nargs="+", default=None,
                   help="module paths or glob patterns (default: the model's encoder blocks, or all leaf modules)")
    p.add_argument("--image-size", type=_positive_int,
                   help="input size in pixels (default: the checkpoint's training size, else 224)")
    p.add_argument("--normalize", choices=["none", "imagenet"], default="none",
                   help="input normalisation: none (pixels in [0,1], neuroalign models) or imagenet mean/std")
    p.add_argument("--batch-size", type=int, default=64, help="stimuli per forward pass (default 64)")
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' …")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="storage type")
    p.add_argument("--pooling", default=None,
                   help="spatial pooling of conv layers: none (default), 'avg' (global average) or k (k×k grid)")
    p.add_argument("--tokens", choices=["all", "cls", "mean"], default="all",
                   help="token choice for transformer outputs (batch, token, feature): all (default), cls or mean")
    p.add_argument("--projection", choices=["random", "pca"],
                   help="reduce each layer to --n-components features: seeded Gaussian random projection or PCA "
                        "(the matrix is stored in the file)")
    p.add_argument("--n-components", type=int, help="features per layer after --projection")
    p.add_argument("--pca-fit", type=int, help="fit PCA on the first m stimuli (default min(n, 1000))")
    p.add_argument("--mask", metavar="STRATEGY[:RATIO[:FILL]]",
                   help="mask every input before the forward pass, e.g. periphery:0.8:mean or patches:0.6 "
                        "(strategies of neuroalign.masking; seeded by --seed)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of random initial weights (model names), random projections and masks (default 0)")
    p.add_argument("--output-element", nargs="+", metavar="LAYER=KEY", default=None,
                   help="for layers returning a tuple, list or dict: the element to keep, by index "
                        "or key (default: element 0 of a tuple or list)")
    p.add_argument("--compression", choices=["zlib", "none"], default="zlib",
                   help="zlib (default: shuffle + deflate, which every netCDF reader decodes) or none")
    p.add_argument("--compression-level", type=int, default=1,
                   help="deflate level 1-9 (default 1, the fastest)")
    p.add_argument("--compression-threads", type=int,
                   help="threads deflating chunks (default: one per CPU core, at most 8)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted extraction (OUT.partial); a finished OUT written "
                        "with the same settings is kept as it is")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT or discard an interrupted OUT.partial")
    p.set_defaults(run=_run_extract)


def _run_extract(args):
    from neuroalign.data.stimuli import StimulusSet
    from neuroalign.data.stimulus_sets import STIMULUS_SETS, load_stimulus_set
    from neuroalign.extraction import extract, image_transform
    from neuroalign.training.trainer import resolve_device

    device = resolve_device(args.device)
    model, attrs, size = _model_from_arg(args.model, device, args.seed)
    size = args.image_size or size or 224
    if args.stimuli in STIMULUS_SETS or not Path(args.stimuli).exists():
        stimuli = load_stimulus_set(args.stimuli)
    else:
        stimuli = StimulusSet.from_folder(args.stimuli)
    if args.normalize == "imagenet":
        transform = image_transform(size, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    else:
        transform = image_transform(size)
    pooling = args.pooling
    if pooling is not None and pooling.isdigit():
        pooling = int(pooling)
    elif pooling == "none":
        pooling = None
    attrs["input_size"] = size
    path = extract(model, stimuli, args.layers, out=args.out, transform=transform,
                   batch_size=args.batch_size, device=device, dtype=args.dtype, pooling=pooling,
                   tokens=args.tokens, projection=args.projection, n_components=args.n_components,
                   fit_stimuli=args.pca_fit, mask=args.mask, seed=args.seed,
                   compression=None if args.compression == "none" else args.compression,
                   compression_level=args.compression_level,
                   compression_threads=args.compression_threads, resume=args.resume,
                   overwrite=args.overwrite, attrs=attrs,
                   output_element=_output_elements(args.output_element))
    print(f"activations: {path}")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive int; got {text}")
    return value


def _output_elements(pairs):
    """LAYER=KEY pairs -> {layer: int index or str key}."""
    if not pairs:
        return None
    chosen = {}
    for pair in pairs:
        layer, sep, key = pair.rpartition("=")
        if not sep or not layer or not key:
            raise ValueError(f"--output-element takes LAYER=KEY pairs; got {pair!r}.")
        chosen[layer] = int(key) if key.lstrip("-").isdigit() else key
    return chosen


def _add_layers(sub):
    p = sub.add_parser("layers", help="list the module paths of a model's layers",
                       description="Print the layer names (module paths) that extract --layers accepts.")
    p.add_argument("model", help="a checkpoint (.pt), a registered model name, torchvision/<name> or timm/<name>")
    p.add_argument("--seed", type=int, default=0, help="seed of random initial weights (default 0)")
    p.set_defaults(run=_run_layers)


def _run_layers(args):
    from neuroalign.extraction import list_layers, resolve_layers

    model, _, _ = _model_from_arg(args.model, "cpu", args.seed)
    default = set(resolve_layers(model, None))
    for name in list_layers(model):
        print(f"{name}{'   (default)' if name in default else ''}")


def _add_analysis_io(p):
    p.add_argument("--layers", nargs="+", help="layers to analyse (default: all in the file)")
    p.add_argument("--out", type=Path, help="write the results dataset to this netCDF file")


def _add_decorrelation(sub):
    p = sub.add_parser(
        "decorrelation", help="latent decorrelation and dimensionality per layer",
        description="FocusMIM's decorrelation L = (1/D)·Σ_{i≠j} C_ij² of z-scored units (from "
        "the n×n Gram matrix), mean |r| over unit pairs and the participation ratio, per layer "
        "of an activation file. Units with zero variance are left out and counted.")
    p.add_argument("activations", type=Path, help="activation file (.nc) from 'neuroalign extract'")
    p.add_argument("--n-boot", type=int, default=0, help="bootstrap resamples of stimuli for intervals (default 0: none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="stream each layer this many features at a time (for layers larger than "
                        "memory; skips mean |r| and bootstrap, which need the layer twice)")
    _add_analysis_io(p)
    p.set_defaults(run=_run_decorrelation)


def _run_decorrelation(args):
    from neuroalign import workflows

    ds = workflows.decorrelation_from_file(args.activations, args.layers, n_boot=args.n_boot,
                                           seed=args.seed, chunk_size=args.chunk_size)
    _finish(ds, args.out, ["L", "L_lo", "L_hi", "mean_abs_r", "participation_ratio", "n_units", "n_constant_units"])


def _add_probe(sub):
    p = sub.add_parser(
        "probe", help="linear-probe accuracy per layer (train file → test file)",
        description="Train a linear classifier on each layer's flattened activations of one file "
        "and report its accuracy on another: the FocusMIM reference readout (raw features, Adam "
        "lr 1e-4, weight decay 1e-8, early stopping on the validation loss of a split of the "
        "training file), the same with standardised features and stopping on validation "
        "accuracy, or scikit-learn logistic regression.")
    p.add_argument("train", type=Path, help="activation file of the training stimuli")
    p.add_argument("test", type=Path, help="activation file of the test stimuli")
    p.add_argument("--label", default="label", help="presentation coordinate holding the class (default 'label')")
    p.add_argument("--kind", choices=["torch", "sklearn"], default="torch",
                   help="torch: linear layer + Adam + early stopping; sklearn: standardised logistic regression with CV'd C")
    p.add_argument("--protocol", choices=["focusmim", "standardized-accuracy"], default="focusmim",
                   help="torch probe protocol (default focusmim, the reference's readout)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="probe seeds (spread reported)")
    p.add_argument("--device", default=None, help="device of the torch probe (default: GPU if any)")
    _add_analysis_io(p)
    p.set_defaults(run=_run_probe)


def _run_probe(args):
    from neuroalign import workflows

    params = {"protocol": args.protocol} if args.kind == "torch" else {}
    if args.kind == "torch" and args.device:
        params["device"] = args.device
    ds = workflows.probe_from_files(args.train, args.test, args.layers, label=args.label,
                                    kind=args.kind, seeds=args.seeds, **params)
    _finish(ds, args.out, ["accuracy_mean", "accuracy_std"])


def _add_rsa(sub):
    from neuroalign.data.registry import BRAIN_DATA

    p = sub.add_parser(
        "rsa", help="RSA of each layer against brain RDMs, with noise ceiling",
        description="Compute an RDM per layer (rsatoolbox's definitions) and compare it with "
        "subject brain RDMs (rsatoolbox compare); report the mean over subjects, its SEM and "
        "the lower/upper noise ceiling. Stimuli are matched by stimulus_id.")
    p.add_argument("activations", type=Path, help="activation file (.nc)")
    p.add_argument("--brain", default="kriegeskorte-hit",
                   help=f"brain RDMs: {', '.join(BRAIN_DATA)}, or an rsatoolbox RDMs file (default kriegeskorte-hit)")
    p.add_argument("--rdm-method", default="correlation", choices=["correlation", "cosine", "euclidean"],
                   help="dissimilarity of the model RDMs (rsatoolbox definitions; euclidean is squared / n_features)")
    p.add_argument("--compare", default="spearman",
                   help="RDM comparison: spearman, tau-a, rho-a, corr, cosine, corr_cov … (rsatoolbox)")
    p.add_argument("--pool-sessions", choices=["rdms", "similarities"], default="rdms",
                   help="how a subject's sessions are pooled: average their RDMs, then compare "
                        "(default), or compare each session, then average the similarities")
    p.add_argument("--n-boot", type=int, default=0, help="bootstrap resamples for a CI (default 0: none)")
    p.add_argument("--resample", choices=["stimuli", "subjects", "both"], default="stimuli",
                   help="what the bootstrap resamples (default stimuli; 'both' is conservative)")
    p.add_argument("--test", choices=["bootstrap", "ttest"],
                   help="also test every pair of layers (layer A vs layer B): paired bootstrap over "
                        "--resample (with --n-boot resamples, default 1000) or paired t-test over subjects")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--figure", type=Path, help="write the layerwise RSA figure (PNG; an SVG beside it)")
    _add_analysis_io(p)
    p.set_defaults(run=_run_rsa)


def _run_rsa(args):
    from neuroalign import workflows

    ds = workflows.rsa_from_file(args.activations, args.brain, args.layers, rdm_method=args.rdm_method,
                                 compare_method=args.compare, pool_sessions=args.pool_sessions,
                                 n_boot=args.n_boot, resample=args.resample, seed=args.seed,
                                 test=args.test)
    _finish(ds, args.out, ["mean", "sem", "ci_lo", "ci_hi"])
    print(f"noise ceiling: lower {float(ds.noise_ceiling_lower):.3f}, upper {float(ds.noise_ceiling_upper):.3f}")
    if args.test:
        layers = list(ds.layer.values)
        print(f"\nlayer A vs layer B ({args.test}): difference of mean similarity, p-value")
        for i, a in enumerate(layers):
            for b in layers[i + 1:]:
                d = ds.isel(layer_a=i, layer_b=layers.index(b))
                print(f"  {a} − {b}: {float(d.diff_difference):+.4f}  p = {float(d.diff_p_value):.3g}")
    if args.figure:
        from neuroalign.analysis.plots import plot_layerwise_rsa

        for path in plot_layerwise_rsa(ds, args.figure):
            print(f"figure: {path}")


def _add_compare_models(sub):
    p = sub.add_parser(
        "compare-models", help="layer × layer similarity of two models (RSA or CKA)",
        description="Compare every layer of one activation file with every layer of another "
        "(checkpoints, seeds, architectures) on the same stimuli: RSA of their RDMs (matched by "
        "stimulus_id) or linear CKA. Prints the matrix; writes netCDF and a heatmap on request.")
    p.add_argument("a", type=Path, help="activation file of the first model")
    p.add_argument("b", type=Path, nargs="?", help="activation file of the second model (default: a itself)")
    p.add_argument("--compare", default="spearman",
                   help="'cka' (linear CKA) or an rsatoolbox RDM comparison: spearman, tau-a, corr … (default spearman)")
    p.add_argument("--debiased", action="store_true", help="debiased CKA (with --compare cka)")
    p.add_argument("--rdm-method", default="correlation", choices=["correlation", "cosine", "euclidean"],
                   help="dissimilarity of the RDMs (RSA only)")
    p.add_argument("--out", type=Path, help="write the matrix to this netCDF file")
    p.add_argument("--figure", type=Path, help="write a heatmap (PNG; an SVG beside it)")
    p.set_defaults(run=_run_compare_models)


def _run_compare_models(args):
    from neuroalign import workflows

    da = workflows.model_similarity_from_files(args.a, args.b, compare_method=args.compare,
                                               rdm_method=args.rdm_method, debiased=args.debiased)
    print(da.to_pandas().round(3).to_string())
    if args.out:
        print(f"results: {workflows.save_results(da.to_dataset(name=da.name or 'similarity'), args.out)}")
    if args.figure:
        from neuroalign.analysis.plots import plot_rsa_matrix

        for path in plot_rsa_matrix(da, args.figure):
            print(f"figure: {path}")


def _add_partition(sub):
    p = sub.add_parser(
        "partition", help="unique and shared variance of a brain RDM explained by model layers",
        description="Variance partitioning (commonality analysis): regress the brain RDM (subjects "
        "averaged) on 1 to 6 model-layer RDMs and split the explained variance into the parts unique "
        "to each model and shared by each subset.")
    p.add_argument("models", nargs="+", help="model layers as FILE.nc:LAYER (1 to 6; one gives its R²)")
    p.add_argument("--brain", default="kriegeskorte-hit", help="brain RDMs (as for 'neuroalign rsa')")
    p.add_argument("--rdm-method", default="correlation", choices=["correlation", "cosine", "euclidean"],
                   help="dissimilarity of the model RDMs")
    p.add_argument("--rank", action="store_true", help="regress ranks of the dissimilarities")
    p.add_argument("--out", type=Path, help="write the results dataset to this netCDF file")
    p.add_argument("--figure", type=Path, help="write a bar chart of the parts (PNG; an SVG beside it)")
    p.set_defaults(run=_run_partition)


def _run_partition(args):
    from neuroalign import workflows

    ds = workflows.partition_from_files(args.brain, args.models, rdm_method=args.rdm_method, rank=args.rank)
    print(workflows.format_table(ds, ["commonality", "fraction"], dim="part"))
    print(f"total R²: {float(ds.total_r2):.4f}")
    if args.out:
        print(f"results: {workflows.save_results(ds, args.out)}")
    if args.figure:
        from neuroalign.analysis.plots import plot_partitioning

        for path in plot_partitioning(ds, args.figure):
            print(f"figure: {path}")


def _finish(ds, out, variables):
    from neuroalign import workflows

    print(workflows.format_table(ds, variables))
    if out:
        print(f"results: {workflows.save_results(ds, out)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuroalign", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from neuroalign import __version__

    parser.add_argument("--version", action="version", version=f"neuroalign {__version__}")
    sub = parser.add_subparsers(title="sub-commands", metavar="COMMAND", required=True)
    for add in (_add_demo, _add_pretrain, _add_extract, _add_layers, _add_decorrelation, _add_probe,
                _add_rsa, _add_compare_models, _add_partition):
        add(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError, FileExistsError, TypeError) as err:
        print(f"neuroalign: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk: the message names the .partial kept for --resume
        from neuroalign.activations import DiskFullError

        if not isinstance(err, DiskFullError):
            raise
        print(f"neuroalign: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
