"""MkDocs hook: the command-line reference (reference/cli.md), generated at build time from
``neuroalign.cli.build_parser`` -- the parser the ``neuroalign`` command runs -- so the page
cannot drift from the options. Named in mkdocs.yml under ``hooks``; not a page itself."""

from __future__ import annotations

import argparse
import os

from mkdocs.structure.files import File, Files

CLI_PAGE = "reference/cli.md"
WIDTH = "100"  # argparse wraps help text at $COLUMNS


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help(parser: argparse.ArgumentParser) -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        return parser.format_help()
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def cli_markdown() -> str:
    """The CLI reference page: the top-level help, then each sub-command's ``--help``."""
    from neuroalign.cli import build_parser

    parser = build_parser()
    commands = _subcommands(parser)
    lines = [
        "# Command line",
        "",
        "Generated from `neuroalign.cli.build_parser` when the site is built: each section is",
        "the output of `neuroalign COMMAND --help` (also `python -m neuroalign COMMAND --help`).",
        "",
        "```text",
        _help(parser).rstrip(),
        "```",
        "",
    ]
    for name, sub in commands.items():
        lines += [f"## {name}", "", "```text", _help(sub).rstrip(), "```", ""]
    return "\n".join(lines)


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, CLI_PAGE, content=cli_markdown()))
    return files
