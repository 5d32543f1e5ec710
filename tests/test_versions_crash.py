"""An apply publishing a new version, killed with SIGKILL at random points, on both
remotes: F/N never holds a half-written version (checked all along, not only after
the kill), no earlier version is lost, every sealed version matches its digest, and
the next apply converges with contiguous numbers, each version pullable and verified.

The kill points are phases of the publication, picked at random per round: the
stage node exists, it holds objects, it is sealed, the old version moved aside."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid

from conftest import Cli, Project, Remote, tree

from manifest_tool.paths import RESERVED_ROOT_NAMES
from manifest_tool.remotes.base import Node
from manifest_tool.remotes.base import Remote as RemoteApi
from manifest_tool.versions import sealed, version_nodes

FILES = 150
SIZE = 32 * 1024
ROUNDS = 5


def test_killed_version_applies_lose_nothing(project: Project, cli: Cli, remote: Remote) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    name = f"v-{uuid.uuid4().hex[:8]}"
    folder = f"/alice/{name}"
    project.manifest(
        f"version: 1\nartifacts:\n  - name: ds\n    folder: {name}\n    make_folder: true\n"
        "    versions: keep\n    objects: [{dir: data}]\n"
    )
    for i in range(FILES):
        project.write(f"data/f{i:03d}.bin", os.urandom(SIZE))
    assert apply(project, remote).returncode == 0
    published = [tree(project.root / "data")]
    api = remote.api()
    for round_ in range(ROUNDS):
        for i in rng.sample(range(FILES), 10):
            project.write(f"data/f{i:03d}.bin", os.urandom(SIZE))
        phase = rng.choice(PHASES)
        at = f"seed {seed}, round {round_}, phase {phase}"
        kill_at(start_apply(project, remote), api, folder, phase, len(published), at)
        check_honest(api, folder, len(published), at)
        code, out, err = cli("apply", "--quiet", "--remote", remote.url, env=remote.env)
        assert code == 0, (at, out, err)
        published.append(tree(project.root / "data"))
        assert cli("plan", "--remote", remote.url, env=remote.env).out == "No changes.\n", at
    versions = json.loads(
        cli("versions", "ds", "--json", "--remote", remote.url, env=remote.env).out
    )["versions"]
    assert [v["version"] for v in versions] == list(range(ROUNDS + 1, 0, -1)), seed
    for v, files in zip(versions, reversed(published), strict=True):
        dest = project.root.parent / f"pull-{v['version']}"
        code, _, err = cli("pull", f"ds@v{v['version']}", "--dest", str(dest),
                           "--remote", remote.url, env=remote.env)  # fmt: skip
        assert code == 0, err
        assert tree(dest, skip=RESERVED_ROOT_NAMES) == {f"data/{k}": b for k, b in files.items()}


APPLY = [sys.executable, "-m", "manifest_tool", "apply", "--workers", "1", "--quiet"]
PHASES = ("staged", "uploading", "sealed", "aside")


def kill_at(
    proc: subprocess.Popen[bytes], api: RemoteApi, folder: str, phase: str, earlier: int, at: str
) -> None:
    """SIGKILL the apply once the publication reaches ``phase`` (or let it finish if
    it gets past it between two looks); F/N must be sealed at every look."""
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            children = api.list_nodes(folder) if api.node_info(folder) else []
            newest = [n for n in children if n.name == "ds"]
            assert not newest or sealed(newest[0]), f"{at}: F/N holds a half-written version"
            if reached(api, children, phase, earlier):
                break
            time.sleep(0.002)
    finally:
        proc.kill()
        proc.wait(30)


def reached(api: RemoteApi, children: list[Node], phase: str, earlier: int) -> bool:
    """``earlier``: the versions published before this round."""
    beside = [n for n in children if n.name != "ds" and n.extra_dict.get("versionOf") == "ds"]
    building = [n for n in beside if not sealed(n)]
    if phase == "staged":
        return bool(building)
    if phase == "uploading":
        return any(api.list_objects(n.path) for n in building)
    if phase == "sealed":  # the new version sealed beside F/N (or moved in already)
        return sum(map(sealed, beside)) >= earlier
    return not any(n.name == "ds" for n in children)  # aside: between the two moves


def start_apply(project: Project, remote: Remote) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*APPLY, "--remote", remote.url],
        cwd=project.root,
        env=remote.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def apply(project: Project, remote: Remote) -> subprocess.CompletedProcess[bytes]:
    proc = start_apply(project, remote)
    proc.wait(120)
    return subprocess.CompletedProcess(proc.args, proc.returncode)


def check_honest(api: RemoteApi, folder: str, earlier: int, at: str) -> None:
    """F/N is absent (between the two moves) or a sealed version; every sealed
    version's digest is its objects'; the versions published before are all there."""
    from manifest_tool.hashing import content_digest

    children = api.list_nodes(folder)
    newest = [n for n in children if n.name == "ds"]
    assert not newest or sealed(newest[0]), f"{at}: F/N holds a half-written version"
    versions = version_nodes(children, folder, "ds")
    for node in versions:
        objects = [o for o in api.list_objects(node.path) if o.path not in RESERVED_ROOT_NAMES]
        rows = [{"path": o.path, "size_bytes": o.size_bytes, "checksum": o.checksum}
                for o in objects]  # fmt: skip
        assert node.extra_dict["contentDigest"] == content_digest(rows), f"{at}: {node.path}"
    assert len(versions) >= earlier, f"{at}: a version was lost"
