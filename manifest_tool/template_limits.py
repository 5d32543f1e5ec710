"""Bounds on rendering one template: output size, loop ranges, big operands, time.

A manifest may come from anyone (a pull request, a shared repository), and Jinja2's
sandbox only stops unsafe attribute access: ``'x' * 4000000000`` allocates 4 GB,
nested ``range(100000)`` loops run for hours, and a recursive macro ends in a
RecursionError. Each of those is turned into ``LimitExceeded`` here, early and cheaply.
"""

from __future__ import annotations

import contextvars
import operator
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

MAX_OUTPUT = 1024 * 1024  # characters per rendered value
MAX_RANGE_TOTAL = 1_000_000  # range() items per rendered value, all loops together
MAX_POWER_BITS = 4096  # a ** b stays a number a manifest could mean
MAX_SECONDS = 3.0  # wall-clock per rendered value

E = TypeVar("E")


class LimitExceeded(Exception):
    """A template hit one of the limits above; the message names it."""


@dataclass
class _Budget:
    deadline: float
    ranged: int = 0

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded(f"rendering took longer than {MAX_SECONDS:g} s (simplify it)")


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("budget", default=None)


def _current() -> _Budget:
    budget = _budget.get()
    if budget is None:  # rendered outside bounded_render (a test): still bounded
        budget = _Budget(time.monotonic() + MAX_SECONDS)
        _budget.set(budget)
    return budget


def _range(*args: int) -> range:
    rng = range(*args)
    budget = _current()
    budget.check_time()
    budget.ranged += len(rng)
    if budget.ranged > MAX_RANGE_TOTAL:
        raise LimitExceeded(
            f"loops over range() exceed {MAX_RANGE_TOTAL:,} iterations in one value"
        )
    return rng


def _check_binop(op: str, left: Any, right: Any) -> None:
    _current().check_time()
    if op == "*":
        for seq, count in ((left, right), (right, left)):
            sized = isinstance(seq, str | bytes | list | tuple) and isinstance(count, int)
            if sized and len(seq) * count > MAX_OUTPUT:
                raise LimitExceeded(
                    f"a repeated value would be {len(seq) * count:,} long "
                    f"(the limit is {MAX_OUTPUT:,})"
                )
    if op == "**" and _power_bits(left, right) > MAX_POWER_BITS:
        raise LimitExceeded(f"{left} ** {right} is too large a number")


def _power_bits(base: Any, exponent: Any) -> int:
    """About how many bits ``base ** exponent`` needs (0 when it cannot grow)."""
    if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 0:
        return 0
    return 0 if abs(base) <= 1 else exponent * abs(base).bit_length()


def bounded_environment(cls: type[E], **options: Any) -> E:
    """An instance of ``cls`` (a SandboxedEnvironment) whose operators, calls and
    ``range`` check the current render's budget."""

    class Bounded(cls):  # type: ignore[valid-type,misc]
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
            _check_binop(op, left, right)
            return {"*": operator.mul, "**": operator.pow}[op](left, right)

        def call(self, context: Any, obj: Any, *args: Any, **kwargs: Any) -> Any:
            _current().check_time()  # every call: a loop that calls anything is timed
            return super().call(context, obj, *args, **kwargs)

    env = Bounded(**options)
    env.globals["range"] = _range
    return env


def bounded_render(template: Any, **context: Any) -> str:
    """``template`` (or a function that compiles it: compiling evaluates constant
    parts, so it must run within the limits too) rendered within the limits;
    LimitExceeded names the one it hit."""
    token = _budget.set(_Budget(time.monotonic() + MAX_SECONDS))
    out: list[str] = []
    size = 0
    try:
        with _memory_cap(), _alarm():  # the timer stops before the cap is lifted
            if callable(template):
                template = template()
            for chunk in template.generate(**context):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise LimitExceeded(f"the value is longer than {MAX_OUTPUT:,} characters")
                out.append(chunk)
    except RecursionError:
        raise LimitExceeded("recursion too deep (a macro that calls itself?)") from None
    except (MemoryError, OverflowError) as err:
        raise LimitExceeded(f"a value is too large ({type(err).__name__})") from None
    finally:
        _budget.reset(token)
    return "".join(out)


MEMORY_HEADROOM = 512 << 20  # what one rendering may allocate beyond what the process holds


@contextmanager
def _memory_cap() -> Iterator[None]:
    """String methods and filters that build huge strings ("x".center(3e9),
    "%03000000000d" % 1) run inside C, where no check or timer can stop them: an
    address-space limit while rendering turns them into a MemoryError instead of
    an out-of-memory kill. The limit is put back afterwards."""
    try:
        import resource

        with open("/proc/self/statm") as fh:
            used = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    except (OSError, ValueError, ImportError):  # not Linux: the other limits still hold
        yield
        return
    cap = used + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    if soft != resource.RLIM_INFINITY and soft <= cap:
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextmanager
def _alarm() -> Iterator[None]:
    """A wall-clock stop for loops that call nothing. Only the main thread gets
    signals; a program's own SIGALRM handler and pending timer are put back after
    (and one due sooner than ours is left alone). Elsewhere the checks in calls and
    ranges still apply."""
    limit = MAX_SECONDS + 0.5
    pending = signal.getitimer(signal.ITIMER_REAL)[0]
    if threading.current_thread() is not threading.main_thread() or 0 < pending <= limit:
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise LimitExceeded(f"rendering took longer than {MAX_SECONDS:g} s (simplify it)")

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, stop)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if old_delay > 0:
            left = max(old_delay - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, old_interval)
