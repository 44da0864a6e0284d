"""Eye movements: where the fovea is during pretraining, and what the network must predict.

    python analyses/eye_movements.py --out studies/eye_movements           # full
    python analyses/eye_movements.py --out studies/eye_movements --quick   # a few minutes

All conditions are periphery masking (ratio 0.8, mean fill, crops; the
``pretrain/cifar10_periphery_cpu.toml`` recipe), 3 seeds, with the fixation changed
(``neuroalign.fixations``, ``neuroalign.views``):

- ``centre``: the reference, one fixation at the image centre (the run ``masking_strategies``
  calls ``periphery``; shared through the run cache);
- ``uniform``: one fixation drawn uniformly over the image;
- ``saccades``: a scanpath of 2 fixations (a uniform start, a saccade of 0.25 × the image side);
  the network sees the union of the two foveal disks and reconstructs the image;
- ``next_fixation``: the same scanpaths, but the network sees the first fixation's view and
  predicts what the second reveals (the paper's Fig. 1).

Readout accuracy, decorrelation L and participation ratio as in ``masking_strategies.py``
(see ``analyses/_study.py``); the paper has no numbers for these conditions.

Writes ``eye_movements.nc`` (condition × seed) and ``eye_movements.png``.

Run time on this machine (AMD EPYC, 2 cores; idle, ~0.6 s a step of batch 128, a 400-step run
~4 min and its readout 35–40 s; shared with other jobs 1.1–5 s a step): 4 conditions × 3 seeds
× 400 steps, of which 3 × 3 runs are new once ``masking_strategies.py`` has run: ~45 min idle
(estimated); ``--quick`` ~1.3 min (measured).
"""

from __future__ import annotations

from _study import condition_table, parse_args, report

SACCADES = {"fixation": "saccades", "n_fixations": 2, "saccade_amplitude": 0.25,
            "saccade_start": "uniform"}
CONDITIONS: dict[str, tuple[str, dict]] = {
    "periphery": ("periphery", {}),  # centre fixation: the name the run cache shares
    "uniform": ("periphery", {"fixation": "uniform"}),
    "saccades": ("periphery", SACCADES),
    "next_fixation": ("periphery", {**SACCADES, "target": "next_fixation"}),
}


def main(argv=None):
    args, scale = parse_args(__doc__, argv)
    table = condition_table(CONDITIONS, scale, args.runs, args.device)
    table = table.assign_coords(condition=["centre", *list(CONDITIONS)[1:]])
    return report(table, args.out, "eye_movements", "Eye movements")


if __name__ == "__main__":
    main()
