"""``neuroalign sweep``: models × brain sets × analyses from a TOML file (neuroalign.sweep)."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["add_sweep"]


def add_sweep(sub):
    p = sub.add_parser(
        "sweep", help="run models × brain sets × analyses from a TOML file, as dask tasks",
        description="Expand a sweep file (models, brain sets, analyses, an output folder; see "
        "docs/sweeps.md) into one extraction per model and stimulus set and one analysis per "
        "model, brain set and analysis, each writing its own file; run those not finished as "
        "dask tasks, then merge every result into OUT/results.nc (model × layer × brain × "
        "metric) with a summary figure. Rerunning skips finished tasks and resumes interrupted "
        "extractions. A failed task is reported at the end (exit code 2); the others finish.")
    p.add_argument("config", type=Path, help="the sweep file (.toml)")
    p.add_argument("--out", type=Path, help="output folder (default: the file's 'out')")
    p.add_argument("--scheduler", default="sync", metavar="sync|threads|processes|ADDRESS",
                   help="where tasks run: 'sync' (one at a time here; the default), "
                        "'processes' (in parallel, in local processes), 'threads' (one at a "
                        "time too: HDF5 files), or a dask.distributed scheduler address "
                        "(tcp://host:8786)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--task", nargs="+", metavar="ID",
                      help="run only these tasks (ids from --list), without merging: one "
                           "element of an array job")
    what.add_argument("--merge", action="store_true",
                      help="run nothing: merge the finished results into results.nc and draw "
                           "the summary figure")
    what.add_argument("--print-commands", action="store_true",
                      help="print one 'neuroalign sweep FILE --task ID' command per task "
                           "(extractions first), then the merge command: for a Slurm array job")
    what.add_argument("--list", action="store_true",
                      help="list the tasks with their state (finished or to do) and output file")
    p.add_argument("--stage", choices=["extract", "analyse", "merge"],
                   help="with --print-commands: only the extraction, analysis or merge commands")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_sweep)


def _run_sweep(args):
    from neuroalign import sweep as sweeps

    if args.stage and not args.print_commands:
        raise ValueError("--stage applies to --print-commands")
    sweep = sweeps.load_sweep(args.config, out=args.out)
    if args.print_commands:
        print("\n".join(sweeps.sweep_commands(sweep, args.stage)))
        return
    if args.list:
        for task in sweep.tasks():
            state = "finished" if sweeps.is_finished(sweep, task) else "to do"
            if state == "to do" and task.path.with_name(task.path.name + ".partial").exists():
                state = "interrupted (resumes)"
            print(f"{task.id}\t{state}\t{task.path}")
        return
    if args.merge:
        ds = sweeps.merge_results(sweep)
        _print_merged(sweep, ds, sweeps.plot_sweep(ds, sweep.out / "summary.png"))
        return
    try:
        report = sweeps.run_sweep(sweep, scheduler=args.scheduler, tasks=args.task,
                                  progress=not args.no_progress)
    except sweeps.SweepFailed as err:
        _print_report(err.report)
        raise
    _print_report(report)


def _print_report(report) -> None:
    counts = report.counts()
    print("tasks: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    for outcome in report.outcomes:
        if outcome.status == "done":
            print(f"  {outcome.task.id}: {outcome.seconds:.1f} s -> {outcome.task.path}")
    for outcome in report.failed:  # the traceback of each failure, then the one-line summary
        if outcome.traceback:
            print(f"\n{outcome.task.id} ({outcome.task.describe()}):\n{outcome.traceback}",
                  file=sys.stderr)
    if report.results is not None:
        _print_merged(report.sweep, report.results, report.figure)


def _print_merged(sweep, ds, figure) -> None:
    print(f"results: {sweep.out / 'results.nc'} ({ds.attrs['n_results']} results; missing: "
          f"{ds.attrs['missing_tasks']})")
    for path in figure:
        print(f"figure: {path}")
