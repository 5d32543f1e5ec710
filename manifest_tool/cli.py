"""The command line: parse, call, print, exit code.

Exit codes: 0 done, 1 a known error or a usage error (one line on stderr), 2 changes pending
(``plan --detailed-exitcode``), 3 an unexpected bug (with a log file), 130 Ctrl-C, 141 the
reader of stdout went away (``... | head -1``), quietly.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from .errors import ManifestInvalid, ManifestToolError, write_log

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn known errors into one line and exit 1, bugs into exit 3 with a log."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe shows here rather than at exit
            return result
        except BrokenPipeError:
            if not _stdout_closed():
                raise
            _drop_stdout()
            sys.exit(141)  # as a shell reports a pipeline's writer that its reader left
        except ManifestInvalid as err:
            for problem in err.problems:
                _error(str(problem))
            sys.exit(1)
        except ManifestToolError as err:
            _error(str(err))
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception:
            log = write_log()
            click.echo(f"error: unexpected error, please report it (details in {log})", err=True)
            sys.exit(3)

    return wrapper  # type: ignore[return-value]


def _stdout_closed() -> bool:
    """Whether the reader of stdout went away (``versions | head -1``): the output is
    not wanted any more, which ends the command quietly. Any other broken pipe (a
    connection, say) stays an error."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poll.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


def _drop_stdout() -> None:
    """What is still buffered for the closed pipe goes nowhere, so that Python's own
    flush at exit does not complain about it."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _error(message: str) -> None:
    """One error line on stderr, its prefix red on a terminal (unless told no colour)."""
    from .colors import use_color

    ctx = click.get_current_context(silent=True)
    no_color = bool(ctx and (ctx.find_root().obj or {}).get("no_color"))
    no_color = no_color or bool(ctx and ctx.params.get("no_color"))
    prefix = "error:"
    if use_color(no_color, sys.stderr):
        prefix = click.style(prefix, fg="red", bold=True)
    click.echo(f"{prefix} {message}", err=True)


def _usage_error(err: click.UsageError) -> NoReturn:
    err.show()  # click's usage text and the one-line reason, on stderr
    sys.exit(1)


class LazyGroup(click.Group):
    """Imports a subcommand's module only when that subcommand is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from .commands import COMMANDS

        return sorted(COMMANDS)

    # Usage errors exit 1, like every other error: CI reads 2 as "changes pending".
    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as err:
            _usage_error(err)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as err:
            _usage_error(err)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        from .commands import COMMANDS

        if cmd_name not in COMMANDS:
            return None
        module, attr = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(f".commands.{module}", __package__), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-f",
    "--file",
    "manifest",
    type=click.Path(path_type=Path),
    default=None,
    help="The manifest (default: artifacts.yaml here or in the nearest parent directory).",
)
@click.option("--no-color", is_flag=True, help="No colour, even on a terminal (or NO_COLOR=1).")
@click.version_option(package_name="manifest-tool")
@click.pass_context
def main(ctx: click.Context, manifest: Path | None, no_color: bool) -> None:
    """Publish ML artifacts declared in artifacts.yaml to an AIStore-compatible server."""
    ctx.obj = {"manifest": manifest, "no_color": no_color}


if __name__ == "__main__":
    main()
