"""``manifest-tool watch``: keep the remote following the files while you work."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import click

from ..cli import handle_errors
from ..render import human_size
from ..watch import Event, Watcher, WatchOptions
from .common import gather, manifest_options


@click.command("watch")
@manifest_options
@click.option(
    "--debounce",
    default=0.5,
    show_default=True,
    type=click.FloatRange(min=0.0),
    metavar="SECONDS",
    help="Act once changed files have been quiet this long.",
)
@click.option("--poll", is_flag=True, help="Poll the files instead of using OS events.")
@click.pass_context
@handle_errors
def watch_command(ctx: click.Context, /, debounce: float, poll: bool, **kw: object) -> None:
    """Apply, then re-apply the artifacts whose files or manifest change (Ctrl-C stops)."""
    opts = gather(ctx, **kw)  # type: ignore[arg-type]
    options = WatchOptions(opts.manifest, opts.vars, opts.remote, opts.targets, debounce, poll)

    def emit(event: Event) -> None:
        if opts.json:
            click.echo(json.dumps(event))
            return
        line = render_event(event)
        is_error = event["event"] in ("error", "invalid-manifest", "warning")
        if line and (is_error or not opts.quiet):
            click.echo(line, err=is_error)

    watcher = Watcher(options, emit)
    with _stop_on_signals(watcher):
        watcher.run()


@contextmanager
def _stop_on_signals(watcher: Watcher) -> Iterator[None]:
    """The first SIGINT or SIGTERM lets the current round finish; a second one interrupts."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if watcher.stopping():
            raise KeyboardInterrupt
        watcher.stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def render_event(event: Event) -> str | None:
    """One line (a few for manifest problems) for a watch event, stamped with the time."""
    kind = event["event"]
    if kind == "round":
        text = _round_line(event)
    elif kind == "start":
        names = ", ".join(event["artifacts"]) or "no artifacts"
        text = (
            f"watching {names} ({len(event['watching'])} director(ies), "
            f"{event['observer']} events); Ctrl-C stops"
        )
    elif kind == "error":
        retry = f" (retrying in {event['retry_in']:.0f} s)" if "retry_in" in event else ""
        text = f"error: {event['message']}{retry}"
    elif kind == "invalid-manifest":
        problems = "".join(f"\n  {p}" for p in event["problems"])
        head = (
            f"round {event['round']} failed"
            if "round" in event
            else "invalid manifest, keeping the last good one"
        )
        text = f"{head}:{problems}"
    elif kind == "warning":
        text = f"warning: {event['message']}"
    elif kind == "stopped":
        text = f"stopped after {event['rounds']} round(s)"
    else:
        return None
    return f"[{time.strftime('%H:%M:%S')}] {text}"


def _round_line(event: Event) -> str:
    names = ", ".join(event["artifacts"])
    n = event["changed"]
    why = {"start": "start", "manifest": "manifest changed", "retry": "retry"}.get(
        event["reason"], f"{n} file{'' if n == 1 else 's'} changed"
    )
    head = f"round {event['round']}: {names} ({why}) -> "
    if not event["changes"]:
        return head + "no changes"
    count = event["uploaded"]
    did = f"uploaded {count} object{'' if count == 1 else 's'} ({human_size(event['bytes'])})"
    if event["deleted"]:
        did += f", deleted {event['deleted']}"
    return f"{head}{did} in {event['seconds']:.2f} s"
