"""Colour for a human at a terminal, and none for anything else.

Output is written plain; these helpers paint it only when the stream is a TTY, the
user did not pass ``--no-color`` and ``NO_COLOR`` (https://no-color.org) is unset or
empty. click also strips ANSI codes from output that is not a terminal.
"""

from __future__ import annotations

import os
from typing import IO, Any

import click

# The plan's leading symbols: what apply adds, changes and removes.
LINE_COLORS = (
    ("-/+", "magenta"),
    ("+", "green"),
    ("~", "yellow"),
    ("-", "red"),
    ("x", "red"),
    ("!", "yellow"),
    ("?", "yellow"),
)


def use_color(no_color: bool, stream: IO[Any]) -> bool:
    if no_color or os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def paint_plan(text: str) -> str:
    """The plan's object and artifact lines coloured by their symbol."""
    return "\n".join(_paint_line(line) for line in text.split("\n"))


def _paint_line(line: str) -> str:
    body = line.lstrip(" ")
    for symbol, color in LINE_COLORS:
        if body.startswith(symbol + " "):
            return click.style(line, fg=color)
    if line.startswith(("Plan:", "Apply complete:")):
        return click.style(line, bold=True)
    return line
