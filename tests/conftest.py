"""Shared fixtures: a manifest project in tmp_path, and the real CLI, run in-process
(``cli``) or as a subprocess (``run_cli``, for kill, signal and TTY tests)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest

if TYPE_CHECKING:
    from manifest_tool.remotes import Remote as RemoteApi

USER = "alice"


class Result(NamedTuple):
    code: int
    out: str
    err: str


class Project:
    """A directory holding a manifest and its data; paths are relative to ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def write(self, rel: str, data: bytes | str = b"") -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def manifest(self, text: str, name: str = "artifacts.yaml") -> Path:
        return self.write(name, text)

    @property
    def store(self) -> Path:
        """The embedded store a manifest without ``remote`` uses by default."""
        return self.root / ".em" / "store"


def tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file below ``root`` (posix relative path -> bytes), but the names in ``skip``."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() not in skip
    }


def store_rows(store: Path, sql: str, *params: object) -> list[sqlite3.Row]:
    """Read the embedded store's SQLite database (read-only, safe while a writer runs)."""
    conn = sqlite3.connect(f"file:{store / 'store.sqlite'}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def stored_blob(store: Path, blob: str) -> bytes:
    """A blob's bytes as stored: its file, or its row (blobs of up to 64 KiB are inline)."""
    path = store / "blobs" / blob[:2] / blob[2:]
    if path.exists():
        return path.read_bytes()
    return bytes(store_rows(store, "SELECT data FROM blobs WHERE hash = ?", blob)[0]["data"])


def corrupt_blob(store: Path, blob: str, offset: int, data: bytes) -> None:
    """Overwrite bytes of a stored blob in place (a disk that rots), wherever it lives."""
    path = store / "blobs" / blob[:2] / blob[2:]
    if path.exists():
        os.chmod(path, 0o644)
        with open(path, "r+b") as fh:
            fh.seek(offset)
            fh.write(data)
        return
    old = stored_blob(store, blob)
    new = old[:offset] + data + old[offset + len(data) :]
    conn = sqlite3.connect(store / "store.sqlite", timeout=30)
    try:
        conn.execute("UPDATE blobs SET data = ? WHERE hash = ?", (new, blob))
        conn.commit()
    finally:
        conn.close()


def store_node(store: Path, path: str) -> dict[str, object] | None:
    """A node's labels, description and extra (decoded), or None when absent."""
    rows = store_rows(store, "SELECT labels, description, extra FROM nodes WHERE path = ?", path)
    if not rows:
        return None
    row = rows[0]
    return {
        "labels": json.loads(row["labels"]),
        "description": row["description"],
        "extra": json.loads(row["extra"]),
    }


def store_objects(store: Path, path: str) -> dict[str, tuple[int, str, str]]:
    """A node's objects: key -> (size, md5, blob)."""
    rows = store_rows(
        store,
        "SELECT o.key, o.size, o.md5, o.blob FROM objects o JOIN nodes n"
        " ON o.node_id = n.id WHERE n.path = ?",
        path,
    )
    return {r["key"]: (r["size"], r["md5"], r["blob"]) for r in rows}


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI run: our user, no remote, key or T9k config leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MANIFEST_TOOL_", "EM_"))}
    env.pop("CI_PIPELINE_ID", None)  # the example manifest renders it
    env.update(MANIFEST_TOOL_USER=USER, T9K_CONFIG=os.devnull + ".absent")
    env.update(XDG_CONFIG_HOME=os.devnull + ".absent")  # no saved login keys either
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "manifest_tool", *args],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


def run_in_process(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
    """The CLI's own entry point through click's CliRunner: the same code, exit codes
    and output as the subprocess, at a fraction of the start-up cost."""
    from click.testing import CliRunner

    from manifest_tool.cli import main

    full = env or cli_env()
    overlay: dict[str, str | None] = {k: None for k in os.environ if k not in full}
    overlay.update(full)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, list(args), env=overlay, catch_exceptions=False)
    finally:
        os.chdir(old)
    return Result(result.exit_code, result.stdout, result.stderr)


class Cli:
    """``cli("plan", "--json")`` runs manifest-tool's CLI in the project, in-process."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def __call__(
        self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> Result:
        return run_in_process(*args, cwd=cwd or self.cwd, env=env)


@pytest.fixture
def cli(project: Project) -> Cli:
    return Cli(project.root)


@pytest.fixture
def api_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """For in-process use of the Python API: the same user and no stray config."""
    from manifest_tool import session

    for key in list(os.environ):
        if key.startswith(("MANIFEST_TOOL_", "EM_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MANIFEST_TOOL_USER", USER)
    monkeypatch.setenv("T9K_CONFIG", str(tmp_path / "no-t9k-config.yaml"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config-home"))
    monkeypatch.setenv("EM_ARTIFACT_PARENT_DIR", str(tmp_path / "api-em"))
    session.reset()
    yield
    session.reset()


@pytest.fixture
def em(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """For the Python API: artifacts under tmp_path/em, the file: store in
    tmp_path/store, the working directory (for sources) tmp_path/src."""
    from manifest_tool import login, session

    monkeypatch.setenv("MANIFEST_TOOL_USER", USER)
    monkeypatch.setenv("EM_ARTIFACT_PARENT_DIR", str(tmp_path / "em"))
    monkeypatch.setenv("T9K_CONFIG", str(tmp_path / "no-t9k-config.yaml"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config-home"))
    monkeypatch.delenv("MANIFEST_TOOL_REMOTE", raising=False)
    monkeypatch.delenv("MANIFEST_TOOL_API_KEY", raising=False)
    (tmp_path / "src").mkdir()
    monkeypatch.chdir(tmp_path / "src")
    session.reset()
    login(f"file:{tmp_path / 'store'}")
    yield tmp_path / "em"
    session.reset()


# -- both remotes ------------------------------------------------------------------------


@dataclass
class Remote:
    """A remote for CLI runs: its URL and the environment (the key) that goes with it."""

    url: str
    env: dict[str, str]

    def api(self) -> RemoteApi:
        """The same remote as the Python ``Remote`` interface, for setting up and checking."""
        from manifest_tool.remotes import open_remote

        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            return open_remote(self.url, Path.cwd())
        finally:
            os.environ.clear()
            os.environ.update(saved)


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    from serverutil import running_server

    with running_server(tmp_path_factory.mktemp("srv"), users=[USER]) as server:
        yield server.url, server.keys[USER]


@pytest.fixture(scope="module")
def replicas_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Two replicas on PostgreSQL + S3 behind a round-robin proxy (see serverutil)."""
    from serverutil import running_replicas

    with running_replicas(tmp_path_factory.mktemp("replicas"), users=[USER]) as pair:
        yield pair.url, pair.keys[USER]


REMOTE_SERVERS = {"http": "http_server", "replicas": "replicas_server"}


def remote_of(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    """The remote ``kind`` names: "file", "http" (one embedded server) or "replicas"."""
    if kind == "file":
        return Remote(f"file:{tmp_path / 'store'}", cli_env())
    url, key = request.getfixturevalue(REMOTE_SERVERS[kind])
    return Remote(url, cli_env(MANIFEST_TOOL_API_KEY=key))


@pytest.fixture(params=["file", "http"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    """Each test that takes it runs twice: on the embedded store and over HTTP. A
    module adds the replicas by overriding this fixture with ``remote_of``."""
    return remote_of(request.param, request, tmp_path)
