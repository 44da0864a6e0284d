"""Layerwise RSA of one activation file against several brain regions, with noise ceilings.

    python analyses/model_to_brain_rsa.py demo_out/activations_kriegeskorte92.nc --out rsa_study

Writes ``rsa_<brain>.nc`` and ``rsa_<brain>.png``/``.svg`` per brain data set, and
``rsa_summary.nc`` (layer × brain: mean similarity, SEM, and each set's noise ceiling).
The activation file must hold the 92-image stimuli (Kriegeskorte / Cichy ids) for the
default brain sets.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import xarray as xr

from neuroalign import workflows
from neuroalign.analysis.plots import plot_layerwise_rsa

DEFAULT_BRAINS = ("kriegeskorte-hit", "cichy-evc", "cichy-it")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("activations", type=Path, help="activation file (.nc)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--brains", nargs="+", default=list(DEFAULT_BRAINS),
                        help=f"brain data sets (default {' '.join(DEFAULT_BRAINS)})")
    parser.add_argument("--compare", default="spearman", help="RDM comparison method (rsatoolbox)")
    parser.add_argument("--n-boot", type=int, default=0, help="bootstrap resamples of stimuli")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    summaries = []
    for brain in args.brains:
        ds = workflows.rsa_from_file(args.activations, brain, compare_method=args.compare,
                                     n_boot=args.n_boot)
        workflows.save_results(ds, args.out / f"rsa_{brain}.nc")
        plot_layerwise_rsa(ds, args.out / f"rsa_{brain}.png")
        summaries.append(xr.Dataset({
            "mean": ds["mean"], "sem": ds["sem"],
            "noise_ceiling_lower": ds["noise_ceiling_lower"],
            "noise_ceiling_upper": ds["noise_ceiling_upper"],
        }).expand_dims(brain=[brain]))
        print(f"\n{brain} ({args.compare}); noise ceiling "
              f"{float(ds.noise_ceiling_lower):.3f}–{float(ds.noise_ceiling_upper):.3f}")
        print(workflows.format_table(ds, ["mean", "sem", "ci_lo", "ci_hi"]))
    summary = xr.concat(summaries, dim="brain")
    summary.attrs.update(activations=str(args.activations), compare_method=args.compare)
    print(f"\nsummary: {workflows.save_results(summary, args.out / 'rsa_summary.nc')}")


if __name__ == "__main__":
    main()
