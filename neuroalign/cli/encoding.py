"""``neuroalign encode``: cross-validated ridge from each layer to each neuroid's responses."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["add_encode"]


def add_encode(sub):
    from neuroalign.data.registry import RESPONSE_DATA

    p = sub.add_parser(
        "encode", help="encoding models: ridge from each layer to neuron/voxel responses",
        description="Fit, per neuroid, a ridge regression from each layer's activations to the "
        "repeat-averaged responses (one penalty per neuroid from an inner K-fold; himalaya's "
        "primal or kernel solver by shape), scored on held-out stimuli of an outer K-fold: "
        "Pearson r, R² and, with repetitions, noise-corrected values (split-half and NCSNR "
        "ceilings). Stimuli are matched by stimulus_id.")
    p.add_argument("activations", type=Path, help="activation file (.nc)")
    p.add_argument("--brain", default="cowley-v4",
                   help=f"responses: {', '.join(RESPONSE_DATA)}, or a responses netCDF "
                        "(presentation × neuroid [× repetition]); default cowley-v4")
    p.add_argument("--layers", nargs="+", help="layers to fit (default: all in the file)")
    p.add_argument("--spaces", nargs="+", metavar="LAYER",
                   help="fit one banded ridge model over these 2-6 layers (feature spaces) "
                        "instead of one model per layer: each space's unique and shared "
                        "held-out variance (--figure draws them)")
    p.add_argument("--n-iter", type=int, default=100,
                   help="random-search draws of the spaces' weights with --spaces (default 100)")
    p.add_argument("--folds", type=int, default=5, help="outer folds over stimuli (default 5)")
    p.add_argument("--alphas", type=float, nargs="+",
                   help="ridge penalties (default 25 values log-spaced from 1e-2 to 1e10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and ceiling splits")
    p.add_argument("--device", default=None,
                   help="torch device for himalaya's torch backend (cpu, cuda, auto); default: "
                        "numpy in float64")
    p.add_argument("--out", type=Path, help="write the results dataset to this netCDF file")
    p.add_argument("--figure", type=Path,
                   help="write the layerwise median score figure (with --spaces: each space's "
                        "unique and the shared variance; PNG, an SVG beside it)")
    p.add_argument("--compare-layers", nargs=2, metavar=("A", "B"),
                   help="two fitted layers whose per-neuroid scores --figure-pairs plots")
    p.add_argument("--figure-pairs", type=Path,
                   help="write the per-neuroid scatter of --compare-layers A B (noise-corrected "
                        "r when there are ceilings; PNG, an SVG beside it)")
    p.set_defaults(run=_run_encode)


def _run_encode(args):
    from neuroalign import workflows

    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else None
    if (args.compare_layers is None) != (args.figure_pairs is None):
        raise ValueError("--compare-layers A B and --figure-pairs go together")
    if args.compare_layers and args.layers:
        absent = [name for name in args.compare_layers if name not in args.layers]
        if absent:
            raise ValueError(f"--compare-layers {absent} are not among --layers {args.layers}")
    if args.alphas is not None and any(a <= 0 for a in args.alphas):
        raise ValueError(f"--alphas must be positive; got {args.alphas}")
    alphas = None if args.alphas is None else np.asarray(args.alphas)
    if args.spaces is not None:
        if args.layers or args.compare_layers:
            raise ValueError("--spaces fits one banded model over its layers: give it without "
                             "--layers and --compare-layers")
        _run_banded(args, alphas, device)
        return
    ds = workflows.encoding_from_file(args.activations, args.brain, args.layers, folds=args.folds,
                            alphas=alphas,
                            seed=args.seed, device=device, out=args.out)
    summary = ds[["r", "r2"] + (["r_corrected"] if "r_corrected" in ds else [])].median("neuroid")
    print("median over neuroids")
    print(workflows.format_table(summary, list(summary.data_vars)))
    if "split_half_reliability" in ds:
        print(f"median split-half reliability {float(ds.split_half_reliability.median()):.3f}, "
              f"NCSNR ceiling {float(ds.ncsnr_ceiling.median()):.1f}%")
    else:
        print(f"{args.brain}: {ds.attrs['noise_ceiling']}")
    if args.out:
        print(f"results: {args.out}")
    if args.figure:
        from neuroalign.analysis.plots.encoding import plot_layerwise_encoding

        for path in plot_layerwise_encoding(ds, args.figure, title=f"{args.brain}"):
            print(f"figure: {path}")
    if args.figure_pairs:
        from neuroalign.analysis.plots.encoding import plot_encoding_pairs

        for path in plot_encoding_pairs(ds, tuple(args.compare_layers), args.figure_pairs,
                                        title=f"{args.brain}"):
            print(f"figure: {path}")


def _run_banded(args, alphas, device) -> None:
    from neuroalign import workflows

    ds = workflows.banded_encoding_from_file(
        args.activations, args.brain, args.spaces, folds=args.folds, alphas=alphas,
        n_iter=args.n_iter, seed=args.seed, device=device, out=args.out)
    names = ["r2_unique", "r2_split"] + (["r2_unique_corrected"] if "r2_unique_corrected" in ds
                                         else [])
    print("median over neuroids")
    print(workflows.format_table(ds[names].median("neuroid"), names, dim="space"))
    joint = ["r_joint", "r2_joint", "r2_shared"]
    joint += [f"{v}_corrected" for v in ("r2_joint", "r2_shared") if f"{v}_corrected" in ds]
    print("joint model: " + ", ".join(f"median {v} {float(ds[v].median()):.4g}" for v in joint))
    if args.out:
        print(f"results: {args.out}")
    if args.figure:
        from neuroalign.analysis.plots.encoding import plot_banded_encoding

        for path in plot_banded_encoding(ds, args.figure, title=f"{args.brain}"):
            print(f"figure: {path}")
