"""Sub-commands that analyse activation files: decorrelation, probe, rsa, compare-models,
partition."""

from __future__ import annotations

from pathlib import Path

__all__ = ["add_decorrelation", "add_probe", "add_rsa", "add_compare_models", "add_partition"]


def _add_analysis_io(p):
    p.add_argument("--layers", nargs="+", help="layers to analyse (default: all in the file)")
    p.add_argument("--out", type=Path, help="write the results dataset to this netCDF file")


def add_decorrelation(sub):
    p = sub.add_parser(
        "decorrelation", help="latent decorrelation and dimensionality per layer",
        description="FocusMIM's decorrelation L = (1/D)·Σ_{i≠j} C_ij² of z-scored units (from "
        "one n×n Gram matrix), mean |r| over unit pairs and the participation ratio of their "
        "correlation matrix (D/(1+L)), per layer of an activation file. Units with zero variance are left out and counted.")
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


def add_probe(sub):
    p = sub.add_parser(
        "probe", help="linear-probe accuracy per layer (train file → test file)",
        description="Train a linear classifier on each layer's flattened activations of one file "
        "and report its accuracy on another: the FocusMIM reference readout (raw features, Adam "
        "lr 1e-4, weight decay 1e-8, early stopping on the validation loss of a split of the "
        "training file), the same with standardised features and stopping on validation "
        "accuracy, L2-regularised logistic regression fitted by full-batch L-BFGS in torch "
        "(scikit-learn's objective, faster than scikit-learn), or scikit-learn logistic "
        "regression with cross-validated C.")
    p.add_argument("train", type=Path, help="activation file of the training stimuli")
    p.add_argument("test", type=Path, help="activation file of the test stimuli")
    p.add_argument("--label", default="label", help="presentation coordinate holding the class (default 'label')")
    p.add_argument("--kind", choices=["torch", "sklearn"], default="torch",
                   help="torch: linear layer + Adam + early stopping; sklearn: standardised logistic regression with CV'd C")
    p.add_argument("--protocol", choices=["focusmim", "standardized-accuracy", "logistic-lbfgs"],
                   default="focusmim",
                   help="torch probe protocol (default focusmim, the reference's readout; "
                        "logistic-lbfgs: L2 logistic regression by full-batch L-BFGS, the fastest)")
    p.add_argument("--C", type=float, default=None,
                   help="inverse regularisation strength of --protocol logistic-lbfgs (default 1.0)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="probe seeds (spread reported)")
    p.add_argument("--device", default=None, help="device of the torch probe (default: GPU if any)")
    _add_analysis_io(p)
    p.set_defaults(run=_run_probe)


def _run_probe(args):
    from neuroalign import workflows

    params = {"protocol": args.protocol} if args.kind == "torch" else {}
    if args.kind == "torch" and args.device:
        params["device"] = args.device
    if args.C is not None:
        if args.kind != "torch" or args.protocol != "logistic-lbfgs":
            raise ValueError("--C applies to --kind torch --protocol logistic-lbfgs only")
        params["C"] = args.C
    ds = workflows.probe_from_files(args.train, args.test, args.layers, label=args.label,
                                    kind=args.kind, seeds=args.seeds, **params)
    _finish(ds, args.out, ["accuracy_mean", "accuracy_std"])


def add_rsa(sub):
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
    if ds.sizes["subject"] == 1:
        print(f"{args.brain}: {workflows.ONE_RDM}")
    else:
        print(f"noise ceiling: lower {float(ds.noise_ceiling_lower):.3f}, "
              f"upper {float(ds.noise_ceiling_upper):.3f}")
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


def add_compare_models(sub):
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


def add_partition(sub):
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
