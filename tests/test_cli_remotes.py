"""plan, apply, ls and pull behave the same on the embedded store and over HTTP.

Every test runs three times, with the same assertions: against ``file:`` (the
embedded store), against the real server on a loopback port, and against two server
replicas on PostgreSQL + S3 behind a round-robin proxy.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import USER, Project, Remote, Result, cli_env, remote_of, run_cli, tree
from serverutil import running_server

MANIFEST = """version: 1
artifacts:
  - name: ds
    labels: [a]
    folder: cv/data
    make_folder: true
    objects:
      - dir: data
        obj_path: files
      - reference: https://example.org/raw.tar.gz
"""


@pytest.fixture
def ds(project: Project, remote: Remote) -> Project:
    # Each test gets its own folder on the shared server: the node path is per test.
    project.manifest(MANIFEST.replace("cv/data", f"cv/{project.root.parent.name}"))
    project.write("data/a.txt", "alpha")
    project.write("data/sub/b.bin", bytes(range(256)) * 64)
    return project


def run(ds: Project, remote: Remote, *args: str) -> Result:
    return run_cli(*args, "--remote", remote.url, cwd=ds.root, env=remote.env)


def ok(result: Result) -> str:
    assert result.code == 0, result.err
    return result.out


@pytest.fixture(params=["file", "http", "replicas"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    """Every test here also runs on two replicas behind a round-robin proxy."""
    return remote_of(request.param, request, tmp_path)


def test_apply_twice_then_no_changes(ds: Project, remote: Remote) -> None:
    first = json.loads(ok(run(ds, remote, "apply", "--json")))
    assert first["applied"][0]["action"] == "create"
    assert first["applied"][0]["uploaded"] == 2
    assert ok(run(ds, remote, "apply")) == "No changes.\n"
    assert run(ds, remote, "plan", "--detailed-exitcode").code == 0


def test_one_changed_file_is_one_upload(ds: Project, remote: Remote) -> None:
    ok(run(ds, remote, "apply"))
    ds.write("data/a.txt", "ALPHA, changed")
    plan = json.loads(ok(run(ds, remote, "plan", "--json")))
    assert plan["artifacts"][0]["upload"] == ["files/a.txt"]
    applied = json.loads(ok(run(ds, remote, "apply", "--json")))["applied"][0]
    assert (applied["action"], applied["uploaded"], applied["deleted"]) == ("update", 1, 0)


def test_deleted_source_is_deleted_remotely(ds: Project, remote: Remote) -> None:
    ok(run(ds, remote, "apply"))
    (ds.root / "data" / "sub" / "b.bin").unlink()
    plan = json.loads(ok(run(ds, remote, "plan", "--json")))
    assert plan["artifacts"][0]["delete"] == ["files/sub/b.bin"]
    ok(run(ds, remote, "apply"))
    pulled = ds.root.parent / "pulled"
    ok(run(ds, remote, "pull", "ds", "--dest", str(pulled)))
    assert sorted(tree(pulled)) == ["files/a.txt", "metadata.yaml", "references.yaml"]


def test_label_change_is_metadata_only(ds: Project, remote: Remote) -> None:
    ok(run(ds, remote, "apply"))
    ds.manifest((ds.root / "artifacts.yaml").read_text().replace("[a]", "[a, b]"))
    plan = json.loads(ok(run(ds, remote, "plan", "--json")))
    assert (plan["artifacts"][0]["action"], plan["artifacts"][0]["upload"]) == ("metadata", [])
    ok(run(ds, remote, "apply"))
    assert ok(run(ds, remote, "apply")) == "No changes.\n"


def test_pull_and_ls_round_trip(ds: Project, remote: Remote) -> None:
    ok(run(ds, remote, "apply"))
    pulled = ds.root.parent / "pulled"
    out = ok(run(ds, remote, "pull", "ds", "--dest", str(pulled)))
    assert "all verified" in out
    got = tree(pulled)
    assert got["files/a.txt"] == b"alpha"
    assert got["files/sub/b.bin"] == bytes(range(256)) * 64
    folder = f"cv/{ds.root.parent.name}"
    listing = json.loads(ok(run(ds, remote, "ls", folder, "--json")))
    assert [n["name"] for n in listing] == ["ds"]
    assert json.loads(listing[0]["extra"])["contentDigest"].startswith("sha256:")


def test_fresh_clone_with_lock_uploads_nothing(ds: Project, remote: Remote) -> None:
    ok(run(ds, remote, "apply"))
    clone = Project(ds.root.parent / "clone")
    clone.manifest((ds.root / "artifacts.yaml").read_text())
    clone.write("artifacts.lock", (ds.root / "artifacts.lock").read_bytes())
    for name, data in tree(ds.root / "data").items():
        clone.write(f"data/{name}", data)
    plan = json.loads(ok(run(clone, remote, "plan", "--json")))
    assert [(a["action"], a["upload"]) for a in plan["artifacts"]] == [("none", [])]
    applied = json.loads(ok(run(clone, remote, "apply", "--json")))
    assert all(a["uploaded"] == 0 for a in applied["applied"])


def test_noop_plan_over_http_is_one_request(project: Project, tmp_path: Path) -> None:
    with running_server(tmp_path / "srv", users=[USER]) as server:
        remote = Remote(server.url, cli_env(MANIFEST_TOOL_API_KEY=server.keys[USER]))
        project.manifest(MANIFEST + MANIFEST.split("artifacts:\n", 1)[1].replace("ds", "ds2"))
        project.write("data/a.txt", "alpha")
        ok(run(project, remote, "apply"))
        before = _requests(server.logs())
        assert ok(run(project, remote, "plan")) == "No changes.\n"
        after = _requests(server.logs())
    made = after[len(before) :]
    assert len(made) == 1, made  # one batch read of both artifacts' nodes, nothing else
    assert '"POST /apis/v1/nodes/infos' in made[0]


def _requests(log: str) -> list[str]:
    """The access-log lines (one per request, in order) of the server's log."""
    return [line for line in log.splitlines() if re.search(r'" \d{3} \d+ [\d.]+s$', line)]


def test_interrupted_apply_resumes_without_resending(
    project: Project, remote: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal
    import subprocess
    import sys
    import time

    from manifest_tool.remotes import open_remote

    monkeypatch.setenv("MANIFEST_TOOL_USER", USER)  # the file: store's user, as the CLI's
    project.manifest(MANIFEST.replace("cv/data", f"cv/{project.root.parent.name}"))
    total = 600  # several store batches of 128, so the kill lands between two
    for i in range(total):
        project.write(f"data/f{i:03d}.bin", i.to_bytes(2, "big") * 32768)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "manifest_tool",
            "apply",
            "-q",
            "--workers",
            "1",
            "--remote",
            remote.url,
        ],
        cwd=project.root,
        env=remote.env,
    )
    api = open_remote(remote.url, project.root, remote.env.get("MANIFEST_TOOL_API_KEY"))
    node = f"/{USER}/cv/{project.root.parent.name}/ds"
    deadline, done = time.monotonic() + 60, 0
    while time.monotonic() < deadline and proc.poll() is None:
        if api.node_info(node) is not None:
            done = len(api.list_objects(node))
            if done >= 40:
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert done >= 40, "the apply finished or stalled before it could be interrupted"
    landed = len(api.list_objects(node))
    while True:  # a put whose body had fully arrived may still commit after the kill
        time.sleep(0.3)
        now = len(api.list_objects(node))
        if now == landed:
            break
        landed = now
    assert landed < total
    applied = json.loads(ok(run(project, remote, "apply", "--json")))["applied"][0]
    assert applied["uploaded"] == total - landed  # what was complete is not sent again
    assert ok(run(project, remote, "apply")) == "No changes.\n"
