"""Masking strategies (FocusMIM's main comparison) on CIFAR-10, beside the paper's STL-10 numbers.

    python analyses/masking_strategies.py --out studies/masking           # full
    python analyses/masking_strategies.py --out studies/masking --quick   # a few minutes

Conditions: periphery masking (ratio 0.8), random patches (0.6), the fovea filter and no
masking (plain autoencoder), each pretrained from its ``pretrain/cifar10_<condition>_cpu.toml``
recipe on CIFAR-10 training JPEGs, 3 seeds; raw pixels as the floor. The readout is the
reference's (flattened latent → linear layer, Adam, early stopping on 20 % of the probe's
training images, accuracy on the CIFAR-10 test split; see ``analyses/_study.py``).

Writes ``masking_strategies.nc`` (condition × seed: accuracy, decorrelation L, participation
ratio; accuracy mean and sd over seeds; the paper's STL-10 accuracy) and
``masking_strategies.png``, and prints the table beside the paper's numbers with which of the
paper's orderings hold at this scale (computed from the numbers).

Run time on this machine (AMD EPYC, 2 cores): idle, pretraining runs at ~0.6 s a step of
batch 128, so a 400-step run takes ~4 min and its readout 35–40 s; the full version (4
conditions × 3 seeds) ~45 min idle (measured: 33 min for seeds 1 and 2 with seed 0 cached;
``--seeds 0`` alone took 41 min with the cores partly shared); ``--quick`` (6 steps of batch 32 on 512 images, 1 seed, 200/100
readout images) ~50 s.
Runs are cached in ``--runs`` (default OUT/runs) and shared with the other studies.
"""

from __future__ import annotations

from _study import condition_table, parse_args, report

CONDITIONS: dict[str, tuple[str, dict]] = {
    "periphery": ("periphery", {}),
    "patches": ("patches", {}),
    "fovea": ("fovea", {}),
    "autoencoder": ("autoencoder", {}),
}


def main(argv=None):
    args, scale = parse_args(__doc__, argv)
    table = condition_table(CONDITIONS, scale, args.runs, args.device, raw_pixels=True)
    return report(table, args.out, "masking_strategies", "Masking strategies")


if __name__ == "__main__":
    main()
