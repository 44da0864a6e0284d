"""MkDocs hooks, named in mkdocs.yml under ``hooks`` (this file is not a page itself):

- the command-line reference (reference/cli.md), generated at build time from
  ``neuroalign.cli.build_parser`` -- the parser the ``neuroalign`` command runs -- so the page
  cannot drift from the options;
- on the API pages, the Sphinx roles some docstrings use (``:func:`flatten```,
  ``:class:`~neuroalign.interrupts.Interrupted```) are shown as plain code (``flatten``,
  ``Interrupted``) instead of the role's raw text.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File, Files

CLI_PAGE = "reference/cli.md"
WIDTH = "100"  # argparse wraps help text at $COLUMNS
# a role as mkdocstrings renders it: ":func:" then the target as inline code
ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|obj|exc):\s*<code>(~?)([^<]+)</code>")


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


def on_config(config):
    """Import neuroalign from the checkout being documented (the folder of mkdocs.yml), also
    when another copy is installed."""
    root = str(Path(config.config_file_path).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return config


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, CLI_PAGE, content=cli_markdown()))
    return files


def _plain_role(match: re.Match) -> str:
    target = match.group(2)
    return f"<code>{target.rsplit('.', 1)[-1] if match.group(1) else target}</code>"


def on_page_content(html: str, page, config, files) -> str:
    if page.file.src_uri.startswith("reference/api/"):
        return ROLE.sub(_plain_role, html)
    return html
