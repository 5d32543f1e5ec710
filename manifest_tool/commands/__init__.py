"""Subcommands, one module each; ``COMMANDS`` is what ``cli.main`` registers."""

from __future__ import annotations

import click

from .apply_cmd import apply_command
from .plan_cmd import plan_command
from .remote_cmds import ls_command, pull_command
from .validate_cmd import schema_command, validate_command

COMMANDS: list[click.Command] = [
    validate_command, plan_command, apply_command, ls_command, pull_command, schema_command,
]

from .serve import serve, user  # noqa: E402

COMMANDS += [serve, user]

from .watch_cmd import watch_command  # noqa: E402

COMMANDS.append(watch_command)
