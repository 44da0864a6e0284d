"""The ``neuroalign`` command: one sub-command per stage of the data flow."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from neuroalign.cli import analyses, encoding, extraction, movies, sweep, training

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
neuroalign: pretrain foveal masked-image-modeling encoders, extract their layer activations
to netCDF, and compare them with brains (decorrelation, linear probes, RSA).

Real data sets are read from the folder named by the environment variable NEUROALIGN_DATA
(or downloaded and checked by SHA-256 where there is a network)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuroalign", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from neuroalign import __version__

    parser.add_argument("--version", action="version", version=f"neuroalign {__version__}")
    sub = parser.add_subparsers(title="sub-commands", metavar="COMMAND", required=True)
    for add in (training.add_demo, training.add_pretrain, extraction.add_extract,
                extraction.add_layers, extraction.add_merge, analyses.add_decorrelation, analyses.add_probe,
                analyses.add_rsa, analyses.add_compare_models, analyses.add_partition,
                encoding.add_encode, movies.add_encode_movie, sweep.add_sweep):
        add(sub)
    return parser


def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code: 0, 2 for
    an error, 128 + the signal for an interruption (130 Ctrl-C, 143 SIGTERM)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError, FileExistsError, TypeError) as err:
        print(f"neuroalign: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co. (an OSError: caught first)
        sys.stderr.close()
        return 0
    except OSError as err:  # a full disk: the message names the .partial kept for --resume
        from neuroalign.activations import DiskFullError

        if not isinstance(err, DiskFullError):
            raise
        print(f"neuroalign: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        return _interrupted(err, args, argv)
    return 0


def _interrupted(err: KeyboardInterrupt, args, argv: list[str]) -> int:
    """One line saying what was saved and the command that continues it; no traceback."""
    from neuroalign.interrupts import Interrupted

    if not isinstance(err, Interrupted):  # a second Ctrl-C, or one outside pretrain/extract
        print("neuroalign: interrupted", file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one line
        line = f"neuroalign: interrupted by {err.signal_name}: {err.what}"
        if hasattr(args, "resume"):
            again = [a for a in argv if a not in ("--resume", "--overwrite")] + ["--resume"]
            torchrun = " (under torchrun, with the same torchrun options)" \
                if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
            line += f"; resume with: neuroalign {shlex.join(again)}{torchrun}"
        print(line, file=sys.stderr)
    return err.exit_code
