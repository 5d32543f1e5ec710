"""A key goes only to the host it belongs to; login and logout save and forget it.

Two real servers on loopback ports, A and B, each with its own alice and key. The
CLI runs in-process through click's CliRunner, with HOME and XDG_CONFIG_HOME under
tmp_path so no real user config is read or written.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import USER, Project, cli_env
from serverutil import Server, running_server

from manifest_tool.cli import main


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    with (
        running_server(tmp_path_factory.mktemp("a"), users=[USER]) as a,
        running_server(tmp_path_factory.mktemp("b"), users=[USER]) as b,
    ):
        yield a, b


def _env(home: Path, **extra: str) -> dict[str, str | None]:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MANIFEST_TOOL_")}
    env.update(cli_env(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config")))
    env["T9K_CONFIG"] = None
    env["T9K_CONFIG_CONTEXT"] = None
    env.update(extra)
    return env


def run(home: Path, *args: str, stdin: str | None = None, **env: str) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin, env=_env(home, **env))


def t9k_config(home: Path, server: Server, other: Server) -> None:
    """A T9k config whose current context is ``server``; a second context names ``other``."""
    (home / ".t9k").mkdir(parents=True, exist_ok=True)
    (home / ".t9k" / "t9k-config.yaml").write_text(
        "current-context: a\ncontexts:\n"
        f"  - name: a\n    server: {server.url}\n    auth: {{apikey: {server.keys[USER]}}}\n"
        f"  - name: b\n    server: {other.url}\n    auth: {{apikey: {other.keys[USER]}}}\n"
    )


def test_t9k_key_goes_only_to_its_own_server(servers: tuple[Server, Server], tmp_path: Path):
    a, b = servers
    t9k_config(tmp_path, a, b)
    # Only the first context's key: make the second one unusable for this check.
    cfg = tmp_path / ".t9k" / "t9k-config.yaml"
    cfg.write_text(cfg.read_text().replace(b.keys[USER], "unused"))
    assert run(tmp_path, "ls", "--remote", a.url).exit_code == 0
    result = run(tmp_path, "ls", "--remote", b.url)
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: not logged in to {b.url}: run manifest-tool login {b.url} "
        "(or set MANIFEST_TOOL_API_KEY)"
    )


def test_t9k_config_path_with_tilde_and_context_variable(
    servers: tuple[Server, Server], tmp_path: Path
):
    a, b = servers
    t9k_config(tmp_path, a, b)
    moved = tmp_path / "elsewhere.yaml"
    (tmp_path / ".t9k" / "t9k-config.yaml").rename(moved)
    env = {"T9K_CONFIG": "~/elsewhere.yaml", "T9K_CONFIG_CONTEXT": "b"}
    assert run(tmp_path, "ls", "--remote", b.url, **env).exit_code == 0
    assert run(tmp_path, "ls", "--remote", a.url, **env).exit_code == 1


def test_login_saves_a_key_for_one_host_only(servers: tuple[Server, Server], tmp_path: Path):
    a, b = servers
    result = run(tmp_path, "login", b.url, "--api-key-stdin", stdin=b.keys[USER] + "\n")
    assert result.exit_code == 0, result.output
    assert f"logged in to {b.url} as {USER}" in result.output
    saved = tmp_path / ".config" / "manifest-tool" / "credentials.yaml"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert run(tmp_path, "ls", "--remote", b.url).exit_code == 0
    to_a = run(tmp_path, "ls", "--remote", a.url)
    assert to_a.exit_code == 1 and "not logged in to" in to_a.output  # B's key not sent

    assert run(tmp_path, "logout", b.url).output.strip() == f"logged out of {b.url}"
    assert "not logged in to" in run(tmp_path, "ls", "--remote", b.url).output
    assert run(tmp_path, "logout", b.url).output.strip() == f"no key saved for {b.url}"


def test_login_prompts_and_refuses_a_wrong_key(servers: tuple[Server, Server], tmp_path: Path):
    _, b = servers
    wrong = run(tmp_path, "login", b.url, stdin="not-a-key\n")
    assert wrong.exit_code == 1
    assert "the API key is not known to" in wrong.output
    assert not (tmp_path / ".config" / "manifest-tool" / "credentials.yaml").exists()
    assert run(tmp_path, "login", b.url, stdin=b.keys[USER] + "\n").exit_code == 0
    assert "not-a-key" not in run(tmp_path, "login", b.url, stdin=b.keys[USER] + "\n").output


def test_precedence_env_then_login_then_t9k(servers: tuple[Server, Server], tmp_path: Path):
    a, b = servers
    t9k_config(tmp_path, a, b)
    cfg = tmp_path / ".t9k" / "t9k-config.yaml"
    cfg.write_text(cfg.read_text().replace(a.keys[USER], "stale-t9k-key"))
    assert "not known" in run(tmp_path, "ls", "--remote", a.url).output  # the T9k key
    run(tmp_path, "login", a.url, "--api-key-stdin", stdin=a.keys[USER])
    assert run(tmp_path, "ls", "--remote", a.url).exit_code == 0  # login beats T9k
    env_wins = run(tmp_path, "ls", "--remote", a.url, MANIFEST_TOOL_API_KEY="wrong")
    assert "not known" in env_wins.output  # the environment beats login


def test_key_never_lands_in_project_files(servers: tuple[Server, Server], tmp_path: Path):
    a, _ = servers
    project = Project(tmp_path / "p")
    project.manifest(
        f"version: 1\nremote: {{url: '{a.url}'}}\nartifacts:\n"
        "  - name: keyless\n    objects: [{file: x.txt}]\n"
    )
    project.write("x.txt", "x")
    run(tmp_path, "login", a.url, "--api-key-stdin", stdin=a.keys[USER])
    result = run(tmp_path, "apply", "-f", str(project.root / "artifacts.yaml"))
    assert result.exit_code == 0, result.output
    key = a.keys[USER].encode()
    for path in project.root.rglob("*"):
        if path.is_file():
            assert key not in path.read_bytes(), path
