"""The anchors measured beside manifest-tool: `git status` on the same tree, `curl -F`
to the same server, and DVC add+push to a local remote (DVC from its own virtualenv,
never a dependency of this project)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from harness import USER, BenchError, Run, Server, Trash, run


def git_status(root: Path, timeout: float) -> Run:
    return run(["git", "status", "--porcelain"], root, dict(os.environ), timeout)


def make_node(server: Server, name: str) -> str:
    """An empty Artifact node /bench/<name> for curl to upload into."""
    body = json.dumps(
        {"parent": f"/{USER}", "name": name, "type": "Artifact", "storageType": 2}
    ).encode()
    req = urllib.request.Request(
        f"{server.url}/apis/v1/nodes",
        data=body,
        method="POST",
        headers={**server.headers(USER), "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30):
        return f"/{USER}/{name}"


def curl_upload(server: Server, path: Path, node: str, timeout: float) -> Run:
    """One object by the protocol's put: ``POST /apis/v1/objects`` with ``-F content=@``."""
    curl = shutil.which("curl")
    if curl is None:
        raise BenchError("curl is not installed")
    cmd = [
        curl,
        "-sSf",
        "-o",
        "/dev/null",
        "-H",
        f"Authorization: Bearer {server.keys[USER]}",
        "-F",
        f"content=@{path}",
        f"{server.url}/apis/v1/objects?path={node}/{path.name}",
    ]
    return run(cmd, path.parent, dict(os.environ), timeout)


@dataclass(frozen=True)
class Dvc:
    exe: Path
    version: str


def find_dvc(given: str | None) -> tuple[Dvc | None, str]:
    """DVC from --dvc or BENCH_DVC; (None, why) when there is none that runs."""
    where = given or os.environ.get("BENCH_DVC")
    if not where:
        return None, "no DVC given (--dvc PATH or BENCH_DVC)"
    try:
        out = subprocess.run([where, "--version"], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        return None, f"DVC at {where} does not run: {exc.strerror}"
    if out.returncode != 0:
        return None, f"DVC at {where} does not run: {out.stderr.strip()[-200:]}"
    return Dvc(Path(where), out.stdout.strip()), ""


def dvc_env(state: Path) -> dict[str, str]:
    # no analytics and no update check: the bench talks to nothing but 127.0.0.1; and
    # DVC's hash index goes to this run's state, not to /var/tmp/dvc
    return {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "DVC_NO_UPDATER": "1",
        "DVC_SITE_CACHE_DIR": str(state / "site"),
    }


def dvc_fresh(dvc: Dvc, root: Path, state: Path, trash: Trash, timeout: float) -> None:
    """A DVC project in ``root`` with an empty cache, state and local remote under
    ``state`` (a directory of this run), as on a first ``dvc add``."""
    env = dvc_env(state)
    if not (root / ".dvc").exists():
        run([str(dvc.exe), "init", "--no-scm", "-q"], root, env, timeout)
    tracked = [p for p in root.glob("*.dvc") if p.is_file()]  # the glob matches .dvc/ too
    trash.discard(root / ".dvc" / "cache", root / ".dvc" / "tmp", *tracked)
    settings = {
        "core.analytics": "false",
        "core.check_update": "false",
        # DVC keeps its hash index outside the project by default (/var/tmp/dvc)
        "core.site_cache_dir": str(state / "site"),
        "remote.bench.url": str(state / "remote"),
        "core.remote": "bench",
    }
    for key, value in settings.items():
        run([str(dvc.exe), "config", "--local", key, value], root, env, timeout)


def dvc_add_push(dvc: Dvc, root: Path, state: Path, target: str, timeout: float) -> float:
    """Seconds for ``dvc add TARGET`` then ``dvc push``."""
    env = dvc_env(state)
    added = run([str(dvc.exe), "add", "-q", target], root, env, timeout)
    pushed = run([str(dvc.exe), "push", "-q"], root, env, timeout)
    return added.seconds + pushed.seconds
