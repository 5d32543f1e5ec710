"""Memory of plan and apply on a big tree, and the column types that keep it small."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path

from conftest import Cli, Project

from manifest_tool.cache import Columns, Md5s
from manifest_tool.files import FileList
from manifest_tool.hashing import listed_rows_digest, rows_digest
from manifest_tool.model import LocalFile

FILES = 20_000
MANIFEST = """\
version: 1
artifacts:
  - name: big
    objects:
      - dir: data
"""


def peak_bytes(run: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def ok(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 0, f"exit {code}\nstdout: {out}\nstderr: {err}"
    return out


def test_plan_and_apply_of_a_big_tree_hold_no_row_objects_per_file(
    project: Project, cli: Cli
) -> None:
    """Per file, a tuple with its key, source path and two large ints costs ~310
    bytes; a no-op plan held that, the index and a copy of both. Columns keep it to
    the key, a few machine words and 16 bytes of MD5 (peaks include the imports)."""
    for d in range(20):
        sub = project.root / "data" / f"d{d:02d}"
        sub.mkdir(parents=True)
        for f in range(FILES // 20):
            (sub / f"f{f:04d}.txt").write_bytes(b"%d/%d\n" % (d, f))
    project.manifest(MANIFEST)
    first = peak_bytes(lambda: ok(cli("plan", "-q")))
    applied = peak_bytes(lambda: ok(cli("apply", "-q")))
    noop = peak_bytes(lambda: ok(cli("plan", "--json")))
    assert '"action": "none"' in ok(cli("plan", "--json"))
    (project.root / "data" / "d00" / "f0000.txt").write_bytes(b"changed\n")
    changed = peak_bytes(lambda: ok(cli("plan", "--json")))
    assert '"action": "update"' in ok(cli("plan", "--json"))
    # with a tuple per file: 660 bytes a file in a no-op plan, 1,140 in a first, 1,660 in
    # apply, 1,400 in the plan of one change (a listing of ObjectInfos and two mappings)
    assert noop / FILES < 450, f"no-op plan: {noop / FILES:.0f} bytes a file"
    assert first / FILES < 800, f"first plan: {first / FILES:.0f} bytes a file"
    assert applied / FILES < 1200, f"apply: {applied / FILES:.0f} bytes a file"
    assert changed / FILES < 800, f"plan of one change: {changed / FILES:.0f} bytes a file"


def walked(tmp_path: Path) -> FileList:
    files = FileList()
    top = files.directory(f"{tmp_path}/src/", len("in/"))
    for name in ("b", "a", "c"):
        files.add(f"in/{name}", top, len(name), 10**12, 10**9)
    files.append(LocalFile("x/one", "/elsewhere/one.bin", 3, 5, 7))
    return files


def test_a_file_list_reads_as_local_files_with_their_sources(tmp_path: Path) -> None:
    files = walked(tmp_path)
    assert files[0] == LocalFile("in/b", f"{tmp_path}/src/b", 1, 10**12, 10**9)
    assert files[3].source == "/elsewhere/one.bin"
    assert [f.key for f in files.sorted()] == ["in/a", "in/b", "in/c", "x/one"]
    assert [f.source for f in files.where(lambda k: k != "in/b")][:1] == [f"{tmp_path}/src/a"]
    moved = files.rekeyed(len("in/"), "out/sub/")
    assert moved[0] == LocalFile("out/sub/b", f"{tmp_path}/src/b", 1, 10**12, 10**9)
    both = FileList.of(files)
    both.extend(moved)
    assert len(both) == 8 and list(both)[4:] == list(moved)


def test_the_index_columns_tell_a_moved_source_from_an_unchanged_tree(tmp_path: Path) -> None:
    files = walked(tmp_path)
    columns = Columns.of(files)
    assert columns.holds(files) and columns.holds(FileList.of(list(files)))
    assert list(columns.iter_rows()) == [tuple(f) for f in files]
    moved = FileList.of(
        f._replace(source=f.source + ".old") if f.key == "in/c" else f for f in files
    )
    assert not columns.holds(moved)
    assert not columns.holds(files.where(lambda k: k != "x/one"))


def test_md5s_read_as_hex_strings() -> None:
    raw = bytes(range(32))
    md5s = Md5s(raw)
    assert len(md5s) == 2 and md5s[1] == raw[16:].hex() and md5s[-1] == md5s[1]
    assert list(md5s) == [raw[:16].hex(), raw[16:].hex()]


def test_a_listing_digest_streams_when_sorted_and_says_so_when_not() -> None:
    rows = [("a", 1, "0" * 32), ("b/c", 2, "1" * 32), ("z", 3, "2" * 32)]
    refs = {"m/ref": "https://example.org/m.tar.gz"}
    assert listed_rows_digest(iter(rows), refs.items()) == rows_digest(rows, refs.items())
    assert listed_rows_digest(iter(rows[::-1]), refs.items()) is None
