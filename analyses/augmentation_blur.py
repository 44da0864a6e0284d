"""Crop augmentation and blurred fill (FocusMIM), periphery and patch masking, on CIFAR-10.

    python analyses/augmentation_blur.py --out studies/augmentation           # full
    python analyses/augmentation_blur.py --out studies/augmentation --quick   # a few minutes

Conditions, each from its ``pretrain/cifar10_<condition>_cpu.toml`` recipe, 3 seeds:
periphery (0.8) and random patches (0.6) with RandomResizedCrop and mean-colour fill (shared
with ``masking_strategies.py`` through the run cache), without crops (``*_nocrop``), and with
the hidden region showing the blurred image instead of the mean colour (``*_blur``). Same
readout, table and paper comparison as ``masking_strategies.py`` (see ``analyses/_study.py``).

Writes ``augmentation_blur.nc`` (condition × seed) and ``augmentation_blur.png``.

Run time on this machine (AMD EPYC, 2 cores; idle, ~0.6 s a step of batch 128, a 400-step run
~4 min and its readout 35–40 s; shared with other jobs 1.1–5 s a step): the full version is 6
conditions × 3 seeds × 400 steps, of which the 4 × 3 runs not shared with
``masking_strategies.py`` are new: ~1 h idle (estimated);
``--quick`` ~1.7 min (measured, 4 new runs).
"""

from __future__ import annotations

from _study import condition_table, parse_args, report

CONDITIONS: dict[str, tuple[str, dict]] = {
    "periphery": ("periphery", {}),
    "periphery_nocrop": ("periphery_nocrop", {}),
    "periphery_blur": ("periphery_blur", {}),
    "patches": ("patches", {}),
    "patches_nocrop": ("patches_nocrop", {}),
    "patches_blur": ("patches_blur", {}),
}


def main(argv=None):
    args, scale = parse_args(__doc__, argv)
    table = condition_table(CONDITIONS, scale, args.runs, args.device)
    return report(table, args.out, "augmentation_blur", "Crop augmentation and blurred fill")


if __name__ == "__main__":
    main()
