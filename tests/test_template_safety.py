"""Templates see only safe variables, and rendering is bounded: one line, exit 1.

The real CLI in-process (click's CliRunner), real manifests under tmp_path. Nothing
reaches a remote: every case is refused while loading the manifest.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import cli_env

from manifest_tool.cli import main
from manifest_tool.manifest import load_manifest

HEAD = "version: 1\nartifacts:\n  - name: a\n    objects: [{file: x.txt}]\n"


def plan(tmp_path: Path, description: str, extra: str = "", **env: str) -> Result:
    manifest = tmp_path / "artifacts.yaml"
    manifest.write_text(f"{extra}{HEAD}    description: {description}\n")
    (tmp_path / "x.txt").write_text("x")
    runner_env = cli_env(**env)
    return CliRunner().invoke(main, ["plan", "-f", str(manifest)], env=runner_env)


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize(
    "name", ["MANIFEST_TOOL_API_KEY", "GITHUB_TOKEN", "db_password", "AWS_SECRET_ACCESS_KEY",
             "MyCredentials"]
)
def test_secret_looking_variables_are_hidden(tmp_path: Path, name: str) -> None:
    result = plan(tmp_path, f'"{{{{ env.{name} }}}}"', **{name: "s3cr3t-value"})
    line = one_line_error(result)
    assert line.startswith(f"error: {tmp_path / 'artifacts.yaml'}:5:18: ")
    assert f"'{name}' looks like a secret" in line and f"allow_env: [{name}]" in line
    assert "s3cr3t-value" not in result.output
    assert not (tmp_path / ".em" / "store").exists()  # nothing written to the remote


def test_hidden_variables_are_not_listed_either(tmp_path: Path) -> None:
    manifest = tmp_path / "artifacts.yaml"
    manifest.write_text(f"{HEAD}    description: '{{{{ env | dictsort }}}}'\n")
    loaded = load_manifest(manifest, env={"MY_TOKEN": "s3cr3t-value", "SAFE": "ok"})
    assert loaded.artifacts[0].description == "[('SAFE', 'ok')]"


def test_allow_env_lets_a_named_variable_through(tmp_path: Path) -> None:
    result = plan(
        tmp_path, '"{{ env.BUILD_TOKEN }}"', extra="allow_env: [BUILD_TOKEN]\n",
        BUILD_TOKEN="public-build-id", OTHER_TOKEN="x",
    )
    assert result.exit_code == 0, result.output
    other = plan(
        tmp_path, '"{{ env.OTHER_TOKEN }}"', extra="allow_env: [BUILD_TOKEN]\n", OTHER_TOKEN="x"
    )
    assert "'OTHER_TOKEN' looks like a secret" in one_line_error(other)


def test_ordinary_variables_still_render(tmp_path: Path) -> None:
    assert plan(tmp_path, '"{{ env.CI_JOB_NAME }}"', CI_JOB_NAME="build").exit_code == 0


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
         "loops over range() exceed"),
        ("{{ 'x' * 4000000000 }}", "a repeated value would be 4,000,000,000 long"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "recursion too deep"),
        ("{% for i in range(3000) %}{{ 'y' * 1000 }}{% endfor %}", "longer than 1,048,576"),
        ("{{ 9 ** 999999 }}", "too large a number"),
        ("{% set s = 'x' * 100000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
         "took longer than"),
    ],
)
def test_rendering_limits_give_one_line(tmp_path: Path, template: str, message: str) -> None:
    started = time.monotonic()
    result = plan(tmp_path, f'"{template}"')
    line = one_line_error(result)
    assert line.startswith(f"error: {tmp_path / 'artifacts.yaml'}:5:18: $.artifacts[0].description")
    assert message in line
    assert time.monotonic() - started < 15


def test_a_programs_own_alarm_survives_rendering(tmp_path: Path) -> None:
    import signal

    def mine(signum: int, frame: object) -> None:
        raise AssertionError("fired")

    previous = signal.signal(signal.SIGALRM, mine)
    old = signal.setitimer(signal.ITIMER_REAL, 100)
    try:
        manifest = tmp_path / "artifacts.yaml"
        manifest.write_text(f"{HEAD}    description: '{{{{ 1 + 1 }}}}'\n")
        assert load_manifest(manifest, env={}).artifacts[0].description == "2"
        assert signal.getsignal(signal.SIGALRM) is mine
        assert 90 < signal.getitimer(signal.ITIMER_REAL)[0] <= 100
    finally:
        signal.signal(signal.SIGALRM, previous)
        signal.setitimer(signal.ITIMER_REAL, *old)
