"""One changed file costs that file: no listing of the node by plan or by seal.

The plan diffs against the rows this checkout sealed last (``.em/cache/sealed``)
while the node still claims their digest; the seal trusts its diff only when the
node's objects revision moved by exactly this apply's own writes (docs/protocol.md).
Every shortcut here must fall back to listing the moment another writer shows.
"""

from __future__ import annotations

import json
import os
import re
from array import array
from pathlib import Path
from typing import Any

import pytest
from conftest import USER, Project, Remote, cli_env, remote_of, run_in_process
from serverutil import running_server

from manifest_tool.apply import Applier
from manifest_tool.errors import ConflictError
from manifest_tool.hashing import md5_bytes
from manifest_tool.remotes import Remote as RemoteApi
from manifest_tool.remotes.base import ObjectInfo, Upload
from manifest_tool.workspace import make_plan, open_workspace

FILES = 1200  # from 1,000 objects the sealed rows are kept (apply.REMEMBER_FROM)


@pytest.fixture(params=["file", "http", "replicas"])
def any_remote(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    return remote_of(request.param, request, tmp_path)


def manifest(folder: str) -> str:
    return (
        "version: 1\nartifacts:\n"
        f"  - name: ds\n    folder: {folder}\n    make_folder: true\n"
        "    objects: [{dir: data}]\n"
    )


def published(project: Project, remote: Remote) -> Project:
    """A project of FILES files, applied once."""
    project.manifest(manifest(f"inc/{project.root.parent.name}"))
    for i in range(FILES):
        project.write(f"data/d{i % 7}/f{i:04d}.txt", f"file {i}\n")
    ok(project, remote, "apply")
    return project


def ok(project: Project, remote: Remote, *args: str) -> str:
    result = run_in_process(*args, "--remote", remote.url, cwd=project.root, env=remote.env)
    assert result.code == 0, (result.out, result.err)
    return result.out


def node_path(project: Project) -> str:
    return f"/{USER}/inc/{project.root.parent.name}/ds"


def sealed_entries(project: Project) -> list[Path]:
    return sorted((project.root / ".em" / "cache" / "sealed").iterdir())


def lock_digest(project: Project) -> str:
    import yaml

    data = yaml.safe_load((project.root / "artifacts.lock").read_text())
    return str(data["artifacts"]["ds"]["contentDigest"])


def assert_sealed_and_exact(project: Project, remote: Remote) -> None:
    """The node claims the lock's digest, holds exactly the files, and plan is clean."""
    node = remote.api().node_info(node_path(project))
    assert node is not None and node.extra_dict.get("contentDigest") == lock_digest(project)
    listed = {o.path: o.checksum for o in remote.api().list_objects(node_path(project))}
    files = {
        str(p.relative_to(project.root)): md5_bytes(p.read_bytes())
        for p in (project.root / "data").rglob("*")
        if p.is_file()
    }
    assert {k: v for k, v in listed.items() if k != "metadata.yaml"} == files
    result = run_in_process(
        "plan", "--detailed-exitcode", "--remote", remote.url, cwd=project.root, env=remote.env
    )
    assert result.code == 0, result.out


# -- requests ---------------------------------------------------------------------------


def _requests(log: str) -> list[str]:
    return [line for line in log.splitlines() if re.search(r'" \d{3} \d+ [\d.]+s$', line)]


def test_one_changed_file_is_five_requests_besides_its_upload(
    project: Project, tmp_path: Path
) -> None:
    with running_server(tmp_path / "srv", users=[USER]) as server:
        remote = Remote(server.url, cli_env(MANIFEST_TOOL_API_KEY=server.keys[USER]))
        published(project, remote)
        project.write("data/d3/f0003.txt", "changed\n")
        before = _requests(server.settled_logs())
        ok(project, remote, "apply")
        made = _requests(server.settled_logs())[len(before) :]
        assert_sealed_and_exact(project, remote)
    upload = [r for r in made if '"POST /apis/v1/objects?' in r and "f0003.txt" in r]
    others = [r for r in made if r not in upload]
    assert len(upload) == 1, made
    assert not [r for r in made if "objects/ls" in r], made  # neither plan nor seal lists
    assert len(others) <= 5, others


def test_first_apply_seals_without_listing_all_objects(project: Project, tmp_path: Path) -> None:
    """A node apply has just made is listed once while empty, not once full."""
    with running_server(tmp_path / "srv", users=[USER]) as server:
        remote = Remote(server.url, cli_env(MANIFEST_TOOL_API_KEY=server.keys[USER]))
        before = _requests(server.settled_logs())
        published(project, remote)
        made = _requests(server.settled_logs())[len(before) :]
        assert_sealed_and_exact(project, remote)
    assert len([r for r in made if "objects/ls" in r]) == 1, made


# -- the shortcuts fall back ------------------------------------------------------------


def test_changes_apply_exactly_through_the_remembered_rows(
    project: Project, any_remote: Remote
) -> None:
    published(project, any_remote)
    assert len(sealed_entries(project)) == 1
    project.write("data/d1/f0001.txt", "edited\n")  # modified
    (project.root / "data/d2/f0002.txt").unlink()  # deleted
    project.write("data/new/n.txt", "new\n")  # added
    plan = json.loads(ok(project, any_remote, "plan", "--json"))
    (art,) = plan["artifacts"]
    assert (art["action"], art["upload"], art["delete"]) == (
        "update", ["data/d1/f0001.txt", "data/new/n.txt"], ["data/d2/f0002.txt"]
    )  # fmt: skip
    ok(project, any_remote, "apply")
    assert_sealed_and_exact(project, any_remote)
    entries = sealed_entries(project)
    assert [e.name for e in entries] == [lock_digest(project).removeprefix("sha256:")]


def _forge_new_content(entry: Path, key: str, data: bytes) -> None:
    """Rows that say the node already holds ``data`` at ``key``: believed, they would
    make apply skip that upload and seal a digest over the old bytes."""
    import marshal

    rows = marshal.loads(entry.read_bytes())
    at = rows["keys"].index(key)
    md5s = bytearray(rows["md5s"])
    md5s[at * 16 : at * 16 + 16] = bytes.fromhex(md5_bytes(data))
    sizes = array("q")
    sizes.frombytes(rows["sizes"])
    sizes[at] = len(data)
    rows["md5s"], rows["sizes"] = bytes(md5s), sizes.tobytes()
    entry.write_bytes(marshal.dumps(rows))


@pytest.mark.parametrize("damage", ["garbage", "empty", "forged rows", "surrogate", "fifo"])
def test_a_damaged_or_forged_remembered_listing_is_only_a_miss(
    project: Project, any_remote: Remote, damage: str
) -> None:
    import marshal

    published(project, any_remote)
    (entry,) = sealed_entries(project)
    new = b"changed\n"
    if damage == "garbage":
        entry.write_bytes(b"\x00not marshal")
    elif damage == "empty":
        entry.write_bytes(b"")
    elif damage == "forged rows":  # well formed, but not the rows of the digest it names
        _forge_new_content(entry, "data/d3/f0003.txt", new)
    elif damage == "surrogate":  # a key no encoding holds
        rows = marshal.loads(entry.read_bytes())
        rows["keys"][0] = "data/\udcff"
        entry.write_bytes(marshal.dumps(rows))
    else:  # a FIFO would block a plain read forever
        entry.unlink()
        os.mkfifo(entry)
    project.write("data/d3/f0003.txt", new.decode())
    plan = json.loads(ok(project, any_remote, "plan", "--json"))
    (art,) = plan["artifacts"]
    assert (art["upload"], art["delete"]) == (["data/d3/f0003.txt"], [])
    ok(project, any_remote, "apply")
    assert_sealed_and_exact(project, any_remote)


def test_an_old_digest_written_back_is_not_the_rows_sealed_with_it(
    project: Project, any_remote: Remote
) -> None:
    """Another client adds an object, then writes back the extra it read before, old
    digest and all (a PUT of extra needs no revision): the node claims a digest we
    sealed, over objects we did not. The remembered rows belong to the revision of
    our seal, so the plan lists, sees the stranger, and apply deletes it."""
    published(project, any_remote)
    other = any_remote.api()
    path = node_path(project)
    before = other.node_info(path)
    assert before is not None
    other.put_object(path, Upload("data/stray.bin", md5_bytes(b"s"), 1, data=b"s"))
    other.update_node(path, extra=before.extra)
    project.write("data/d3/f0003.txt", "changed\n")
    plan = json.loads(ok(project, any_remote, "plan", "--json"))
    (art,) = plan["artifacts"]
    assert (art["upload"], art["delete"]) == (["data/d3/f0003.txt"], ["data/stray.bin"])
    ok(project, any_remote, "apply")
    assert_sealed_and_exact(project, any_remote)


class _Intruder:
    """Our remote; another client puts an object into the node right after our
    first upload lands, as a second machine's apply or a T9k client could."""

    def __init__(self, inner: RemoteApi, other: RemoteApi) -> None:
        self._inner, self._other, self.armed = inner, other, True

    def _strike(self, node_path: str) -> None:
        if self.armed:
            self.armed = False
            data = b"intruder"
            self._other.put_object(node_path, Upload("zz.bin", md5_bytes(data), 8, data=data))

    def put_object(self, node_path: str, upload: Upload) -> ObjectInfo:
        info = self._inner.put_object(node_path, upload)
        self._strike(node_path)
        return info

    def put_objects(self, node_path: str, uploads: Any) -> list[ObjectInfo]:
        infos: list[ObjectInfo] = self._inner.put_objects(node_path, uploads)  # type: ignore[attr-defined]
        self._strike(node_path)
        return infos

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_write_by_another_client_during_apply_fails_the_seal(
    project: Project, any_remote: Remote
) -> None:
    published(project, any_remote)
    project.write("data/d3/f0003.txt", "changed\n")
    os.environ.update(any_remote.env)
    ws = open_workspace(project.root / "artifacts.yaml", remote_url=any_remote.url)
    plan = make_plan(ws)
    intruder = _Intruder(ws.remote, any_remote.api())
    applier = Applier(intruder, ws.lock_file, ws.lock(), sealed=ws.sealed)  # type: ignore[arg-type]
    with pytest.raises(ConflictError, match="changed while this apply ran"):
        applier.apply(plan)
    assert not intruder.armed
    node = any_remote.api().node_info(node_path(project))
    assert node is not None and "contentDigest" not in node.extra_dict
    repair = json.loads(ok(project, any_remote, "plan", "--json"))["artifacts"][0]
    assert repair["delete"] == ["zz.bin"]
    ok(project, any_remote, "apply")
    assert_sealed_and_exact(project, any_remote)


# -- the server's half: one write, one step -----------------------------------------------


def test_each_objects_write_moves_the_revision_by_exactly_one(
    any_remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from manifest_tool.remotes import http
    api = any_remote.api()
    folder = f"rev-{tmp_path.name}"
    api.create_node(f"/{USER}", folder, "Folder")
    path = f"/{USER}/{folder}/a"
    api.create_node(f"/{USER}/{folder}", "a", "Artifact", extra='{"alternativeName": "a_1"}')

    def revision() -> int:
        node = api.node_info(path)
        assert node is not None and node.revision is not None
        return node.revision

    def up(key: str, data: bytes) -> Upload:
        return Upload(key, md5_bytes(data), len(data), data=data)

    batch = [up(f"b{i}", b"%d" % i) for i in range(3)]
    steps: list[tuple[str, Any, int]] = [
        ("put", lambda: api.put_object(path, up("x", b"x")), 1),
        ("put again", lambda: api.put_object(path, up("x", b"x")), 1),
        ("batch of 3", lambda: api.put_objects(path, batch), 1),  # type: ignore[attr-defined]
        ("metadata.yaml", lambda: api.put_object(path, up("metadata.yaml", b"m: 1\n")), 0),
        ("delete 2", lambda: api.delete_objects(path, ["b0", "b1"]), 1),
        ("delete a missing key", lambda: api.delete_objects(path, ["nope"]), 1),
        ("delete metadata.yaml", lambda: api.delete_objects(path, ["metadata.yaml"]), 0),
    ]
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 * 1024 * 1024))
    if isinstance(api, http.HttpRemote):  # a multipart upload: its finish is the write
        monkeypatch.setattr(http, "MULTIPART_ABOVE", 1024 * 1024)
        sent = Upload("big", md5_bytes(big.read_bytes()), big.stat().st_size, source=big)
        steps.append(("multipart", lambda: api.put_object(path, sent), 1))
    counted = api.writes  # type: ignore[attr-defined]
    for what, step, moves in steps:
        before, mine = revision(), counted.of(path)
        step()
        assert revision() - before == moves, what
        assert counted.of(path) - mine == moves, what  # the client counts as the server moves


# -- the diff's fast path agrees with the merge ---------------------------------------------


def test_edited_in_place_finds_exactly_the_changed_rows() -> None:
    import random
    from array import array

    from manifest_tool.listing import Listing, edited_in_place

    rng = random.Random(7)
    keys = sorted(f"k/{i:05d}" for i in range(5000))
    sizes = array("q", (rng.randrange(1, 10**6) for _ in keys))
    sums = [os.urandom(16).hex() for _ in keys]
    with_reserved = sorted([*keys, "metadata.yaml", "references.yaml"])

    def listing(sizes_: array[int], sums_: list[str]) -> Listing:
        rows = {k: (s, c) for k, s, c in zip(keys, sizes_, sums_, strict=True)}
        rows.update({"metadata.yaml": (9, "m" * 32), "references.yaml": (3, "")})
        return Listing(
            with_reserved, array("q", (rows[k][0] for k in with_reserved)),
            [rows[k][1] for k in with_reserved],
        )  # fmt: skip

    for trial in range(20):
        mine_sizes, mine_sums = array("q", sizes), list(sums)
        changed = sorted(rng.sample(range(len(keys)), rng.randrange(0, 40)))
        for i in changed:
            if trial % 2:
                mine_sizes[i] += 1
            else:
                mine_sums[i] = os.urandom(16).hex()
        got = edited_in_place(keys, mine_sizes, mine_sums, listing(sizes, sums))
        assert got == [keys[i] for i in changed]
    # other key sets, or checksums that are not MD5s, go to the merge
    assert edited_in_place(keys[1:], sizes[1:], sums[1:], listing(sizes, sums)) is None
    odd = [*sums[:-1], "abc-3"]
    assert edited_in_place(keys, sizes, sums, listing(sizes, odd)) is None
    upper = [sums[0].upper(), *sums[1:]]
    assert edited_in_place(keys, sizes, sums, listing(sizes, upper)) is None
    shifted = ["", sums[0] + sums[1], *sums[2:]]  # hex when joined, yet not MD5s
    assert edited_in_place(keys, sizes, sums, listing(sizes, shifted)) is None


def test_a_batch_of_new_blobs_fits_sqlites_oldest_parameter_limit(tmp_path: Path) -> None:
    """SQLite before 3.32 takes at most 999 parameters a statement."""
    import sqlite3

    from manifest_tool.remotes.store import Store

    store = Store(tmp_path / "store")
    try:
        store.create_node(USER, f"/{USER}", "art", "Artifact")
        store.db.conn().setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # type: ignore[attr-defined]
        items = [(f"k{i:04d}", [b"%d" % i], md5_bytes(b"%d" % i)) for i in range(450)]
        stored = store.put_batch(USER, f"/{USER}/art", items)
        assert len(stored) == 450
        objects, total = store.list_objects(USER, f"/{USER}/art", 1, 1000)
        assert total == 450 and {o.checksum for o in objects} == {md5 for _, _, md5 in items}
    finally:
        store.close()


def test_fifos_in_place_of_every_cache_file_cost_a_rehash_not_a_hang(
    project: Project, tmp_path: Path
) -> None:
    """Every reader of ``.em/cache`` opens only regular files: a FIFO put there (or a
    link to a device) would otherwise block the plan for ever."""
    from conftest import run_cli

    published(project, Remote(f"file:{tmp_path / 'store'}", cli_env()))
    cache = project.root / ".em" / "cache"
    replaced = []
    for path in sorted(p for p in cache.rglob("*") if p.is_file()):
        path.unlink()
        os.mkfifo(path)
        replaced.append(path.relative_to(cache).parts[0])
    assert {"clock", "identities", "indexes", "sealed"} <= set(replaced), replaced
    project.write("data/d3/f0003.txt", "changed\n")
    env = cli_env()
    result = run_cli("plan", "--json", "--remote", f"file:{tmp_path / 'store'}",
                     cwd=project.root, env=env, timeout=60)  # fmt: skip
    assert result.code == 0, result.err
    (art,) = json.loads(result.out)["artifacts"]
    assert (art["upload"], art["delete"]) == (["data/d3/f0003.txt"], [])
