"""A first hour without friction (issue 14): init, finding the manifest from a
subdirectory, schema --write, dir exclude, and one-line hints for the usual mistakes."""

from __future__ import annotations

import json
import re
from pathlib import Path

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


def test_dot_dot_in_a_folder_is_caught_by_validate_with_its_position(
    cli: Cli, project: Project
) -> None:
    project.write("data/a.txt", "a\n")
    project.manifest(ONE.replace("  - name: a\n", "  - name: a\n    folder: a/../../x\n"))
    code, _, err = cli("validate")
    assert code == 1
    assert err.startswith("error: artifacts.yaml:4:13: $.artifacts[0].folder: folder 'a/../../x'")
    project.manifest("version: 1\ndefaults:\n  folder: ../up\n" + ONE.removeprefix("version: 1\n"))
    assert "artifacts.yaml:3:11: $.defaults.folder" in cli("validate").err


def test_an_undeclared_var_is_an_error_naming_the_declared_ones(
    cli: Cli, project: Project
) -> None:
    project.write("data/a.txt", "a\n")
    project.manifest("vars:\n  run: r1\n  stage: dev\n" + ONE)
    code, _, err = cli("validate", "--var", "nope=1")
    assert code == 1
    assert "--var nope" in err and "run, stage" in err, err
    assert cli("validate", "--var", "run=2").code == 0


def test_dir_exclude_leaves_out_matching_files(cli: Cli, project: Project) -> None:
    project.write("data/keep.bin", "k")
    project.write("data/sub/skip.tmp", "t")
    project.write("data/cache/x.bin", "c")
    project.manifest(
        "version: 1\nartifacts:\n  - name: a\n    objects:\n"
        "      - dir: data\n        exclude: ['*.tmp', 'cache/']\n"
    )
    code, out, err = cli("plan", "--json")
    assert code == 0, err
    (artifact,) = json.loads(out)["artifacts"]
    assert sorted(artifact["upload"]) == ["data/keep.bin"]


def test_a_subdirectory_finds_the_manifest_above_and_its_relative_paths(
    cli: Cli, project: Project
) -> None:
    project.write("data/a.txt", "a\n")
    project.manifest(ONE)
    deep = project.root / "src" / "deeper"
    deep.mkdir(parents=True)
    code, out, err = cli("plan", "--json", cwd=deep)
    assert code == 0, err
    assert json.loads(out)["artifacts"][0]["upload"] == ["a.txt"]
    assert cli("apply", "-q", cwd=deep).code == 0
    assert (project.root / "artifacts.lock").exists()
    assert not (deep / ".em").exists() and (project.root / ".em").is_dir()


def test_no_manifest_anywhere_names_artifacts_yaml(cli: Cli, project: Project) -> None:
    code, _, err = cli("validate")
    assert code == 1 and "artifacts.yaml" in err


def test_init_writes_a_manifest_that_validates_and_applies(cli: Cli, project: Project) -> None:
    from manifest_tool.manifest import schema_text

    project.write("models/m.bin", "m")
    project.write("my data/d.csv", "d")
    project.write("__pycache__/x.pyc", "c")
    project.write("train.py", "print()")
    project.write(".gitignore", "*.pyc")  # no trailing newline
    code, _, err = cli("init")
    assert code == 0, err
    text = (project.root / "artifacts.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=manifest.schema.json\n")
    assert (project.root / "manifest.schema.json").read_text() == schema_text()
    assert (project.root / ".gitignore").read_text().splitlines()[0] == "*.pyc"
    assert ".em/" in (project.root / ".gitignore").read_text().splitlines()
    assert cli("validate").code == 0
    plan = json.loads(cli("plan", "--json").out)
    assert sorted(a["name"] for a in plan["artifacts"]) == ["models", "my-data"]
    assert cli("apply", "-q").code == 0


def test_init_refuses_to_overwrite_a_manifest(cli: Cli, project: Project) -> None:
    project.manifest(ONE)
    code, _, err = cli("init")
    assert code == 1 and "exists" in err
    assert (project.root / "artifacts.yaml").read_text() == ONE


def test_schema_write_puts_the_schema_beside_the_manifest(cli: Cli, project: Project) -> None:
    from manifest_tool.manifest import schema_text

    project.manifest(ONE)
    (project.root / "sub").mkdir()
    assert cli("schema", "--write", cwd=project.root / "sub").code == 0
    assert (project.root / "manifest.schema.json").read_text() == schema_text()
    assert cli("schema", "--write", "sub/s.json").code == 0
    assert json.loads((project.root / "sub" / "s.json").read_text())["$schema"]
    assert cli("schema", "nowhere.json").code == 1


def test_every_environment_variable_read_is_in_the_readme_table() -> None:
    root = Path(__file__).resolve().parents[1]
    code = "\n".join(p.read_text() for p in (root / "manifest_tool").rglob("*.py"))
    read = set(re.findall(r"(?:environ\.get|getenv|environ\[)\(?\s*[\"']([A-Z0-9_]+)", code))
    assert {"MANIFEST_TOOL_FILE", "MANIFEST_TOOL_REMOTE"} <= read
    readme = (root / "README.md").read_text()
    table = readme.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    missing = sorted(v for v in read if f"`{v}`" not in table)
    assert not missing, f"not in the README's environment table: {missing}"


def test_completion_is_documented_for_bash_zsh_and_fish() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for shell in ("bash", "zsh", "fish"):
        assert f"_MANIFEST_TOOL_COMPLETE={shell}_source manifest-tool" in readme
