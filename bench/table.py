"""A row of the performance table: a figure, its anchor from the same run, their ratio,
the goal and whether it is met; and the markdown table of such rows."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str  # "s", "MiB", "MiB/s", "requests"
    note: str = ""  # what else was seen in the same measure (requests, RSS)

    def text(self) -> str:
        shown = (
            f"{self.value:,.0f}"
            if self.unit == "requests" or self.value >= 100
            else (f"{self.value:.2f}" if self.value < 10 else f"{self.value:.1f}")
        )
        unit = "request" if self.unit == "requests" and self.value == 1 else self.unit
        return f"{shown} {unit}" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class Goal:
    """``ratio <= 1.5`` when on_ratio, else a bound on the figure itself (``< 1 s``)."""

    op: str
    limit: float
    on_ratio: bool = True

    def met(self, figure: Figure, ratio: float | None) -> bool | None:
        value = ratio if self.on_ratio else figure.value
        return None if value is None else OPS[self.op](value, self.limit)

    def text(self, unit: str) -> str:
        return f"{self.op} {self.limit:g}{'x' if self.on_ratio else ' ' + unit}"


@dataclass(frozen=True)
class Row:
    order: int  # the place in the table, whichever group measured it
    work: str
    figure: Figure | None = None
    anchor_label: str = ""
    anchor: Figure | None = None
    goal: Goal | None = None
    missing: str = ""  # why there is no figure (a skipped peer, a failed step)

    @property
    def ratio(self) -> float | None:
        if self.figure is None or self.anchor is None or self.anchor.value <= 0:
            return None
        return self.figure.value / self.anchor.value

    @property
    def met(self) -> bool | None:
        if self.figure is None or self.goal is None:
            return None
        return self.goal.met(self.figure, self.ratio)

    def cells(self) -> list[str]:
        figure = self.figure.text() if self.figure else "-"
        anchor = self.anchor_label
        if self.anchor is not None:
            anchor = f"{anchor}: {self.anchor.text()}" if anchor else self.anchor.text()
        ratio = f"{self.ratio:.2f}x" if self.ratio is not None else "-"
        unit = self.figure.unit if self.figure else ""
        goal = self.goal.text(unit) if self.goal else "-"
        verdict = {True: "met", False: "**not met**", None: "-"}[self.met]
        if self.missing:
            verdict = self.missing
        return [self.work, figure, anchor or "-", ratio, goal, verdict]


HEADER = ["work", "figure", "anchor (same run)", "ratio", "goal", "met"]


def markdown(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r.cells()) + " |" for r in rows]
    return "\n".join(lines) + "\n"
