"""``neuroalign encode-movie``: clip features → movie fMRI time series, split by run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["add_encode_movie"]


def add_encode_movie(sub):
    p = sub.add_parser(
        "encode-movie", help="encoding models of movie fMRI time series (FIR delays, split by run)",
        description="Place each file's clip features on the movie's stimulus timeline, resample "
        "them to the TR, z-score per run, add FIR delays and fit ridge (himalaya) to every "
        "voxel, the penalty chosen leave-one-run-out on the training runs; scored on held-out "
        "runs (leave-one-run-out, or --test-runs). With --partition the files are the feature "
        "spaces of one banded model and the result is their unique and shared variance.")
    p.add_argument("features", nargs="+",
                   help="clip feature files (.npz or .nc), each PATH or NAME=PATH")
    p.add_argument("--brain", type=Path, required=True,
                   help="movie responses (.nc or .npz: bold time × neuroid, run, tr, timeline)")
    p.add_argument("--delays", type=float, nargs="+", default=[2.0, 4.0, 6.0, 8.0],
                   help="FIR delays in seconds, multiples of the TR (default 2 4 6 8)")
    p.add_argument("--test-runs", nargs="+",
                   help="runs held out (repeats of one stimulus sequence give noise ceilings); "
                        "default: leave-one-run-out")
    p.add_argument("--layer",
                   help="read this layer (kept over time) from activation-file features")
    p.add_argument("--method", choices=("average", "lanczos"), default="average",
                   help="resampling of features to the TR (default average within each TR)")
    p.add_argument("--partition", action="store_true",
                   help="banded ridge over the 2-6 files: unique and shared variance")
    p.add_argument("--by", default="stream",
                   help="neuroid coordinate to summarise over (default stream; e.g. roi)")
    p.add_argument("--alphas", type=float, nargs="+",
                   help="ridge penalties (default 25 values log-spaced from 1e-2 to 1e10)")
    p.add_argument("--n-iter", type=int, default=50,
                   help="random-search draws of the banded model (default 50)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random search and ceilings")
    p.add_argument("--device", default=None,
                   help="torch device for himalaya's torch backend; default: numpy in float64")
    p.add_argument("--out", type=Path, help="write the results dataset to this netCDF file")
    p.set_defaults(run=_run_encode_movie)


def _run_encode_movie(args):
    from neuroalign.analysis.movie_encoding import summarize_neuroids
    from neuroalign.movie_files import movie_encoding_from_files

    features = {}
    for item in args.features:
        name, _, path = item.rpartition("=")
        name = name or Path(path).stem
        if name in features:
            raise ValueError(f"two feature files named {name!r}; name them NAME=PATH")
        features[name] = Path(path)
    if args.alphas is not None and any(a <= 0 for a in args.alphas):
        raise ValueError(f"--alphas must be positive; got {args.alphas}")
    ds = movie_encoding_from_files(
        features, args.brain, delays=args.delays, test_runs=args.test_runs, method=args.method,
        partition=args.partition, alphas=None if args.alphas is None else np.asarray(args.alphas),
        n_iter=args.n_iter, layer=args.layer, seed=args.seed, device=args.device, out=args.out)
    by = summarize_neuroids(ds, args.by)
    names = ["r2_unique", "r2_shared", "r2_joint"] if args.partition else ["r", "r2"]
    dim = "space" if args.partition else "layer"
    print(f"median over the neuroids of each {args.by} ({ds.attrs['split']})")
    for label in by[args.by].values:
        part = by.sel({args.by: label})
        for name in names:
            values = part[name]
            cells = (f"{float(values):.4g}" if values.ndim == 0 else "  ".join(
                f"{k}={float(v):.4g}" for k, v in zip(part[dim].values, values.values, strict=True)))
            print(f"{label:<12} {name:<10} {cells}")
    if args.out:
        print(f"results: {args.out}")
