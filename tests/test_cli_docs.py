"""docs/cli.md documents every command and every option of ``swiftformer``.

The parser is the source of truth: a command without a ``## `swiftformer CMD` `` section, or an option
(``--flag``, ``--no-flag``) or positional that its section does not mention, fails with the names.
Options hidden from ``--help`` (``help=argparse.SUPPRESS``) are internal and need no documentation.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from swiftformer.cli import build_parser

DOC = Path(__file__).parents[1] / "docs" / "cli.md"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert actions, "build_parser() has no subcommands"
    return {name: sub for action in actions for name, sub in action.choices.items()}


def _documented_names(sub: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    """(long options, positional names) that ``sub --help`` shows."""
    options, positionals = [], []
    for action in sub._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            options += [s for s in action.option_strings if s.startswith("--") and s != "--help"]
        else:
            metavar = action.metavar if isinstance(action.metavar, str) else None
            positionals.append(metavar or action.dest)
    return options, positionals


def _sections() -> dict[str, str]:
    """``## `` heading → its text (up to the next ``## `` heading; ``###`` stays inside)."""
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^## +(.*)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _section_of(command: str, sections: dict[str, str]) -> str | None:
    """The text of the sections whose heading names ``command`` as a word, in any case
    (e.g. ``## `swiftformer eval` ``)."""
    pattern = re.compile(rf"(?<![\w-]){re.escape(command)}(?![\w-])", re.IGNORECASE)
    found = [body for heading, body in sections.items() if pattern.search(heading)]
    return "\n".join(found) if found else None


def _mentions(text: str, name: str) -> bool:
    """``name`` as a whole token: ``--model`` is not found inside ``--model-ema``."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


COMMANDS = sorted(_subcommands())


def test_every_command_has_a_section():
    sections = _sections()
    missing = [cmd for cmd in COMMANDS if _section_of(cmd, sections) is None]
    assert not missing, f"{DOC} has no '## ' section for: {', '.join(missing)} (headings: {list(sections)})"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_is_documented(command):
    section = _section_of(command, _sections())
    if section is None:
        pytest.fail(f"{DOC} has no '## ' section naming {command!r}")
    options, positionals = _documented_names(_subcommands()[command])
    missing_options = [o for o in options if not _mentions(section, o)]
    missing_positionals = [p for p in positionals if not _mentions(section, p)]
    problems = []
    if missing_options:
        problems.append(f"options: {', '.join(missing_options)}")
    if missing_positionals:
        problems.append(f"positionals: {', '.join(missing_positionals)}")
    assert not problems, f"swiftformer {command}: not documented in its section of {DOC}: " + "; ".join(problems)
