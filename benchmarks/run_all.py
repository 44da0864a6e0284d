"""Runs every benchmark and writes the table of ratios to benchmarks/results.md.

Each ``bench_*.py`` module with a ``results(quick)`` function runs in a fresh process (so one
benchmark's threads, caches and memory do not colour the next), one after another; the
1-minute load average is read before and after each, and the table gives, per row, our figure,
the named baseline's figure from the same run, the ratio and whether its target is met.

    python benchmarks/run_all.py            # full sizes (tens of minutes on 2 cores)
    python benchmarks/run_all.py --quick    # smaller sizes, under 5 minutes
    python benchmarks/run_all.py --only bench_rdm bench_probe --out /tmp/results.md

Benchmarks are not tests: they time, on a machine that may be shared, what tests check for
correctness. Read a ratio with the load beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _table import Row  # noqa: E402


def benchmark_modules() -> list[str]:
    """The bench_*.py modules that define results(quick), in file-name order."""
    names = []
    for path in sorted(HERE.glob("bench_*.py")):
        if "def results(" in path.read_text():
            names.append(path.stem)
    return names


def run_one(name: str, quick: bool, out: Path) -> None:
    """In the child process: the module's rows, as JSON, to `out`."""
    module = importlib.import_module(name)
    rows = module.results(quick=quick)
    out.write_text(json.dumps([dataclasses.asdict(r) for r in rows]))


def machine() -> dict[str, str]:
    import numpy
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "CPU": f"{cpu}, {os.cpu_count()} logical cores",
        "GPU": gpu,
        "torch threads": str(torch.get_num_threads()),
        "Python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }


def run_all(names: list[str], quick: bool) -> list[tuple[str, list[Row], float, float, float]]:
    """[(module, rows, seconds, load before, load after)], each module in its own process."""
    measured = []
    for name in names:
        print(f"== {name}{' (quick)' if quick else ''}", flush=True)
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rows.json"
            cmd = [sys.executable, str(HERE / "run_all.py"), "--child", name, "--child-out", str(out)]
            if quick:
                cmd.append("--quick")
            subprocess.run(cmd, check=True, cwd=HERE.parent)
            rows = [Row(**r) for r in json.loads(out.read_text())]
        seconds = time.perf_counter() - t0
        measured.append((name, rows, seconds, load_before, os.getloadavg()[0]))
        for r in rows:
            print(f"   {r.summary()}", flush=True)
    return measured


def _figure(value: float, unit: str) -> str:
    return f"{value:.3g} {unit}"


def table(measured, quick: bool) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark results",
        "",
        f"Written by `python benchmarks/run_all.py{' --quick' if quick else ''}` on {now}. "
        "Each ratio compares neuroalign with the named baseline measured in the same run; "
        "load is the 1-minute load average before → after the module "
        f"(the machine has {os.cpu_count()} logical cores).",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in machine().items()]
    lines += [
        "",
        "| benchmark | neuroalign | baseline | ratio | target | met | load |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rows, _, before, after in measured:
        for r in rows:
            sign = "≥" if r.higher_is_better else "≤"
            lines.append(
                f"| {r.benchmark} (`{name}`) | {_figure(r.ours, r.unit)} | "
                f"{_figure(r.baseline, r.unit)} {r.baseline_name} | "
                f"{r.ratio:.2f}× ({r.ratio_meaning}) | {sign} {r.target:g}× | "
                f"{'yes' if r.met else '**no**'} | {before:.1f} → {after:.1f} |"
            )
    lines += ["", "## Notes", ""]
    for name, rows, seconds, _, _ in measured:
        lines.append(f"- `{name}` ({seconds:.0f} s):")
        lines += [f"  - {r.benchmark}: {r.notes}" for r in rows if r.notes]
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 5 minutes")
    parser.add_argument("--only", nargs="+", metavar="MODULE", help="run these bench modules only")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_one(args.child, args.quick, args.child_out)
        return
    names = benchmark_modules()
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"no benchmark module(s) {unknown}; there are {names}")
        names = [n for n in names if n in args.only]
    measured = run_all(names, args.quick)
    write_atomically(args.out, table(measured, args.quick))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
