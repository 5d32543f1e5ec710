"""The measures behind the table, grouped by the tree they run on. Each group builds
(or finds) its tree, measures manifest-tool and the anchors in the same run, and adds
its rows; the trees stay for the next run and the state each run made is trashed."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import peers
import trees
from context import RSS_LIMIT, Bench, mib, peer_row, repeat_counted, seconds, write_manifest
from harness import BenchError, Repeated, Requests, Run, Server, counted, repeat, say, serving
from table import Figure, Goal, Row


def files_root(b: Bench) -> Path:
    return trees.files_tree(b.tree(f"files-{b.sizes.files}"), b.sizes.files, b.sizes.files_dirs)


def wide_root(b: Bench) -> Path:
    return trees.files_tree(b.tree(f"files-{b.sizes.wide}"), b.sizes.wide, b.sizes.wide_dirs)


def many_root(b: Bench) -> Path:
    s = b.sizes
    return trees.many_tree(b.tree(f"many-{s.many}x{s.per}"), s.many, s.per)


def big_root(b: Bench) -> Path:
    return trees.big_tree(b.tree(f"big-2x{b.sizes.big_mib}"), 2, b.sizes.big_mib)


def files_group(b: Bench, rows: list[Row]) -> None:
    """Rows 1, 2, 5 and 7: first apply, no-op plan and one change in the files tree."""
    n = b.sizes.files
    root = files_root(b)
    emb, noop_emb, git = embedded_and_git(b, root, "bench", n, "")
    b.fresh(root)
    with serving(b.run_dir / "srv-files", b.run_dir / "logs") as srv:
        say(f"{n:,} files: first apply, HTTP")
        http, http_req = counted(srv, lambda: b.cli(["apply"], root, srv))
        say(f"{n:,} files: no-op plan, HTTP")
        noop_http, noop_req = b.warm_counted(["plan"], root, srv)
        say(f"{n:,} files: one file changed, HTTP; curl of that file")
        victim = trees.files_in(root, min(8, b.sizes.files_dirs))[-1] / "f0003.bin"

        def change() -> Run:
            with trees.Edited(victim):  # new bytes each time: each apply uploads one file
                return b.cli(["apply"], root, srv)

        one, one_req = repeat_counted(srv, change)
        node = peers.make_node(srv, "curl-one")
        upload = repeat(3, lambda: peers.curl_upload(srv, victim, node, b.sizes.timeout))
    say(f"{n:,} files: DVC add+push, then one file changed")
    dvc_all = b.dvc_seconds(root, "data", "dvc-files")
    with trees.Edited(victim):
        dvc_one = b.dvc_seconds(root, "data", "dvc-files", fresh=False) if dvc_all[0] else dvc_all
    work = f"{n:,} x 1 KiB first apply"
    http_fig = seconds(http.seconds, f"{http_req.count()}, client RSS {http.rss_mib:.0f} MiB")
    rows += [
        Row(10, f"{work}, HTTP", http_fig, "embedded", seconds(emb.seconds), Goal("<=", 1.5)),
        peer_row(11, f"{work}, HTTP", http_fig, "DVC add+push", dvc_all, Goal("<=", 0.2)),
        Row(12, f"peak RSS, {work}, HTTP", mib(http.rss_mib), goal=RSS_LIMIT),
        peer_row(
            20,
            f"{work}, embedded",
            seconds(emb.seconds, f"RSS {emb.rss_mib:.0f} MiB"),
            "DVC add+push",
            dvc_all,
            Goal("<=", 0.2),
        ),
        *noop_rows(50, n, noop_emb, noop_http, noop_req, git, 3),
        *change_rows(70, n, (one, one_req), noop_http.seconds + upload.seconds, noop_req, dvc_one),
    ]


def embedded_and_git(
    b: Bench, root: Path, name: str, n: int, why: str
) -> tuple[Run, Repeated, Repeated]:
    """A tree's first apply to the embedded store from nothing, then its no-op plan
    and ``git status`` on it: the start of both groups of the files trees."""
    write_manifest(root, "artifacts.yaml", [(name, "bench", ["dir: data"])])
    b.fresh(root)
    say(f"{n:,} files: first apply, embedded{why}")
    first = b.cli(["apply"], root)
    say(f"{n:,} files: no-op plan, embedded; git status")
    noop = b.warm_repeat(lambda: b.cli(["plan"], root))
    git = b.warm_repeat(lambda: peers.git_status(root, b.sizes.timeout))
    return first, noop, git


def noop_rows(
    order: int,
    n: int,
    emb: Repeated,
    http: Repeated,
    http_req: Requests,
    git: Repeated,
    goal: float,
) -> list[Row]:
    work = f"no-op plan, {n:,} files"
    anchor = seconds(git.seconds)
    return [
        Row(
            order,
            f"{work}, embedded",
            seconds(emb.seconds, f"RSS {emb.rss_mib:.0f} MiB"),
            "git status",
            anchor,
            Goal("<=", goal),
        ),
        Row(
            order + 1,
            f"{work}, HTTP",
            seconds(http.seconds, f"{http_req.count()}, RSS {http.rss_mib:.0f} MiB"),
            "git status",
            anchor,
            Goal("<=", goal),
        ),
    ]


def change_rows(
    order: int,
    n: int,
    one: tuple[Repeated, Requests],
    anchor_s: float,
    noop_req: Requests,
    dvc_one: tuple[float | None, str],
) -> list[Row]:
    work = f"one file changed in {n:,}, HTTP"
    done, req = one
    figure = seconds(done.seconds, f"{req.count()}")
    return [
        Row(
            order,
            f"{work}: requests besides the file's upload",
            Figure(req.total - min(1, req.uploads), "requests", req.breakdown()),
            "no-op plan",
            Figure(noop_req.total, "requests"),
            Goal("<=", 5, on_ratio=False),
        ),
        Row(
            order + 1,
            work,
            figure,
            "no-op plan + curl of the file",
            seconds(anchor_s),
            Goal("<=", 1.5),
        ),
        peer_row(order + 2, work, figure, "DVC add+push of the change", dvc_one, None),
    ]


def wide_group(b: Bench, rows: list[Row]) -> None:
    """Row 4: no-op plan of the big tree on both remotes, and the peak RSS there."""
    n = b.sizes.wide
    root = wide_root(b)
    why = " (the state the no-op plans start from)"
    first, noop_emb, git = embedded_and_git(b, root, "wide", n, why)
    # the server serves the very store the embedded apply wrote: the same artifact,
    # without uploading the tree a second time
    with serving(root / ".em" / "store", b.run_dir / "logs") as srv:
        say(f"{n:,} files: no-op plan, HTTP")
        noop_http, noop_req = b.warm_counted(["plan"], root, srv)
    rows += noop_rows(40, n, noop_emb, noop_http, noop_req, git, 4)
    rows += [
        Row(
            42,
            f"peak RSS, no-op plan, {n:,} files, embedded",
            mib(noop_emb.rss_mib),
            goal=RSS_LIMIT,
        ),
        Row(43, f"peak RSS, no-op plan, {n:,} files, HTTP", mib(noop_http.rss_mib), goal=RSS_LIMIT),
        Row(
            44,
            f"peak RSS, first apply, {n:,} files, embedded",
            mib(first.rss_mib, f"in {first.seconds:.1f} s"),
            goal=RSS_LIMIT,
        ),
    ]


def many_group(b: Bench, rows: list[Row]) -> None:
    """Rows 3 and 6: many artifacts, first apply and no-op plan."""
    s = b.sizes
    root = many_root(b)
    dirs = [f"d{d:04d}" for d in range(s.many)]
    few = write_manifest(root, "few.yaml", [(d, "few", [f"dir: a/{d}"]) for d in dirs[: s.few]])
    many = write_manifest(root, "many.yaml", [(d, "many", [f"dir: a/{d}"]) for d in dirs])
    one = write_manifest(root, "one.yaml", [("all", "one", ["dir: a"])])
    counts = ((few, s.few), (many, s.many))
    emb = first_applies(b, root, counts, None)
    with serving(b.run_dir / "srv-many", b.run_dir / "logs") as srv:
        http = first_applies(b, root, counts, srv)
        say(f"{s.many:,} artifacts: no-op plan, HTTP; one artifact of as many files")
        noop_many, many_req = b.warm_counted(["plan", "-f", many], root, srv)
        b.cli(["apply", "-f", one], root, srv)
        noop_one, one_req = b.warm_counted(["plan", "-f", one], root, srv)
    for i, (remote, (few_s, many_s)) in enumerate((("embedded", emb), ("HTTP", http))):
        rows.append(
            Row(
                30 + i,
                f"{s.many:,} artifacts x {s.per} files first apply, {remote}",
                seconds(many_s),
                f"{s.few:,} artifacts",
                seconds(few_s),
                Goal("<=", 12),
            )
        )
    rows.append(
        Row(
            60,
            f"no-op plan, {s.many:,} artifacts, HTTP",
            seconds(noop_many.seconds, f"{many_req.count()}"),
            f"one artifact of {s.many * s.per:,} files",
            seconds(noop_one.seconds, f"{one_req.count()}"),
            Goal("<=", 2),
        )
    )


def first_applies(
    b: Bench, root: Path, manifests: Sequence[tuple[str, int]], server: Server | None
) -> list[float]:
    """Seconds of a first apply of each manifest, each from no local state."""
    times = []
    for name, count in manifests:
        b.fresh(root)
        say(f"{count:,} artifacts: first apply, {'HTTP' if server else 'embedded'}")
        times.append(b.cli(["apply", "-f", name], root, server).seconds)
    return times


def big_group(b: Bench, rows: list[Row]) -> None:
    """Rows 8 and 9: one and two big files, against curl, the embedded store and DVC."""
    size = b.sizes.big_mib
    root = big_root(b)
    one = write_manifest(root, "one.yaml", [("one", "bench", ["file: data/b0.bin"])])
    two = write_manifest(root, "two.yaml", [("two", "bench", ["dir: data"])])
    b.fresh(root)
    with serving(b.run_dir / "srv-big-one", b.run_dir / "logs") as srv:
        say(f"one new {size} MiB file: apply over HTTP, then curl -F to the same server")
        apply_one = b.cli(["apply", "-f", one], root, srv)
        node = peers.make_node(srv, "curl-big")
        other = root / "data" / "b1.bin"  # not b0: no blob the server already holds
        curl = repeat(3, lambda: peers.curl_upload(srv, other, node, b.sizes.timeout))
    b.fresh(root)
    with serving(b.run_dir / "srv-big-two", b.run_dir / "logs") as srv:
        say(f"2 x {size} MiB: first apply, HTTP")
        two_http = b.cli(["apply", "-f", two], root, srv)
    b.fresh(root)
    say(f"2 x {size} MiB: first apply, embedded; DVC add+push")
    two_emb = b.cli(["apply", "-f", two], root)
    dvc = b.dvc_seconds(root, "data", "dvc-big")
    http_fig = seconds(two_http.seconds, f"client RSS {two_http.rss_mib:.0f} MiB")
    rows += [
        Row(
            80,
            f"one new {size} MiB file, HTTP apply",
            Figure(size / apply_one.seconds, "MiB/s", f"{apply_one.seconds:.2f} s"),
            "curl -F",
            Figure(size / curl.seconds, "MiB/s", f"{curl.seconds:.2f} s"),
            Goal(">=", 0.8),
        ),
        Row(
            90,
            f"2 x {size} MiB first apply, HTTP",
            http_fig,
            "embedded",
            seconds(two_emb.seconds),
            Goal("<=", 1.3),
        ),
        peer_row(91, f"2 x {size} MiB first apply, HTTP", http_fig, "DVC add+push", dvc, None),
    ]


def render_group(b: Bench, rows: list[Row]) -> None:
    """Row 10: the text plan of many new files, beside the same plan as JSON."""
    n, s = b.sizes.render, b.sizes
    root = files_root(b)
    per_dir = s.files // s.files_dirs
    dirs = trees.files_in(root, -(-n // per_dir))
    entries = [f"dir: data/{d.name}" for d in dirs]
    name = write_manifest(root, "render.yaml", [("render", "render", entries)])
    say(f"text plan --verbose of {len(dirs) * per_dir:,} new files; the same as --json")
    json_plan = b.warm_repeat(lambda: b.cli(["plan", "--json", "-f", name], root))
    # --verbose lists every file; the default text shows the first 20 of each artifact
    text = b.warm_repeat(lambda: b.cli(["plan", "--verbose", "-f", name], root))
    rows.append(
        Row(
            100,
            f"text `plan --verbose` of {len(dirs) * per_dir:,} new files",
            seconds(text.seconds),
            "`plan --json`",
            seconds(json_plan.seconds),
        )
    )
    # the goal is about rendering: planning (walking and hashing) costs the same in both
    rows.append(
        Row(
            101,
            f"rendering {len(dirs) * per_dir:,} new files as text (text plan minus --json)",
            seconds(max(text.seconds - json_plan.seconds, 0.0)),
            goal=Goal("<", 1, on_ratio=False),
        )
    )


# the longest group last: a run cut short keeps the others (see run_groups)
GROUPS: dict[str, Callable[[Bench, list[Row]], None]] = {
    "files": files_group,
    "wide": wide_group,
    "big": big_group,
    "render": render_group,
    "many": many_group,
}


TREES: dict[str, Callable[[Bench], Path]] = {
    "files": files_root,
    "wide": wide_root,
    "big": big_root,
    "render": files_root,
    "many": many_root,
}


def run_groups(b: Bench, names: Sequence[str], after: Callable[[list[Row]], None]) -> list[Row]:
    """The rows of the named groups in table order; ``after`` sees them after each group
    (a run cut short still leaves the groups it finished)."""
    rows: list[Row] = []
    for name in names:
        try:
            GROUPS[name](b, rows)
        except (BenchError, OSError, RuntimeError, subprocess.SubprocessError) as exc:
            # a server that did not start, a refused connection: the other groups go on
            say(f"{name}: stopped: {exc}")
            rows.append(Row(999, f"{name} rows", missing=f"failed: {exc}"))
        after(sorted(rows, key=lambda r: r.order))
    return sorted(rows, key=lambda r: r.order)
