"""A first hour without friction (issue 14): init, finding the manifest from a
subdirectory, schema --write, dir exclude, and one-line hints for the usual mistakes."""

from __future__ import annotations

from conftest import Cli, Project, cli_env

ONE = "version: 1\nartifacts:\n  - name: a\n    objects:\n      - file: data/a.txt\n"


def test_https_against_a_plain_http_server_says_so(
    cli: Cli, project: Project, http_server: tuple[str, str]
) -> None:
    url, key = http_server
    project.write("data/a.txt", "a\n")
    project.manifest(ONE)
    tls = url.replace("http://", "https://")
    code, _, err = cli("plan", "--remote", tls, env=cli_env(MANIFEST_TOOL_API_KEY=key))
    assert code == 1
    assert err.count("\n") == 1, err
    assert "TLS handshake failed" in err and f"use {url}" in err, err
