"""One row of the benchmark table: a hot path against its named baseline, measured in one run.

Every ``bench_*.py`` module has ``results(quick: bool) -> list[Row]``; ``run_all.py`` calls
them in turn and writes ``results.md`` with the machine and its load beside each row.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Row:
    """One measured ratio and the target it is held to.

    Args:
        benchmark: what is measured, with its size ("correlation RDM, 2000 × 20000 float32").
        ours: neuroalign's figure (seconds, or images/s; see ``unit``).
        baseline: the baseline's figure in the same unit, measured in the same run.
        baseline_name: what the baseline is ("rsatoolbox.rdm.calc_rdm", "bare forward").
        unit: "s" (time: lower is better) or a rate such as "images/s" (higher is better).
        ratio: the figure the target is about, as ``ratio_meaning`` says.
        ratio_meaning: how ratio is formed ("baseline time / ours", "ours time / baseline").
        target: the bound ratio is held to.
        higher_is_better: whether ratio must be ≥ target (else ≤ target).
        notes: precision, sizes, anything a reader needs to trust the figure.
    """

    benchmark: str
    ours: float
    baseline: float
    baseline_name: str
    unit: str
    ratio: float
    ratio_meaning: str
    target: float
    higher_is_better: bool = True
    notes: str = ""

    @property
    def met(self) -> bool:
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    def summary(self) -> str:
        """One line: both figures, the ratio, the target and whether it is met."""
        sign = "≥" if self.higher_is_better else "≤"
        return (f"{self.benchmark}: ours {self.ours:.3g} {self.unit}, {self.baseline_name} "
                f"{self.baseline:.3g} {self.unit}; {self.ratio:.2f} ({self.ratio_meaning}), "
                f"target {sign} {self.target:g}: {'met' if self.met else 'NOT met'}")


def speedup(benchmark: str, ours_s: float, baseline_s: float, baseline_name: str,
            target: float, notes: str = "") -> Row:
    """A row for "ours should be faster": ratio = baseline time / our time, ≥ target."""
    return Row(benchmark, ours_s, baseline_s, baseline_name, "s", baseline_s / ours_s,
               "baseline time / ours", target, True, notes)


def overhead(benchmark: str, ours_s: float, baseline_s: float, baseline_name: str,
             target: float, notes: str = "") -> Row:
    """A row for "ours adds work to a floor": ratio = our time / baseline time, ≤ target."""
    return Row(benchmark, ours_s, baseline_s, baseline_name, "s", ours_s / baseline_s,
               "ours time / baseline", target, False, notes)


def throughput(benchmark: str, ours: float, baseline: float, baseline_name: str, unit: str,
               target: float, notes: str = "") -> Row:
    """A row for rates (images/s): ratio = our rate / baseline rate, ≥ target."""
    return Row(benchmark, ours, baseline, baseline_name, unit, ours / baseline,
               "ours rate / baseline", target, True, notes)


def timed(fn: Callable[[], object], repeats: int = 1) -> tuple[float, object]:
    """(median seconds over repeats, the last result) of fn()."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out
