"""``manifest-tool plan`` and the CLI's contract: JSON keys, targets, exit codes, --help."""

from __future__ import annotations

import json
import re

import pytest
from conftest import Cli, Project, store_node

TWO = """\
version: 1
artifacts:
  - name: one
    objects:
      - file: data/one.txt
  - name: two
    folder: {folder}
    make_folder: {make}
    objects:
      - file: data/two.txt
        obj_path: nested/
"""


@pytest.fixture
def two(project: Project) -> Project:
    project.write("data/one.txt", "1\n")
    project.write("data/two.txt", "2\n")
    project.manifest(TWO.format(folder="models/v1", make="true"))
    return project


def one_error_line(result: tuple[int, str, str]) -> str:
    code, _, err = result
    assert code == 1, result
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_plan_lists_every_changed_object(cli: Cli, two: Project) -> None:
    code, out, err = cli("plan")
    assert (code, err) == (0, "")
    assert "+ one: create /alice/default/one" in out
    assert "    + one.txt" in out
    assert "+ two: create /alice/models/v1/two" in out
    assert "    + nested/two.txt" in out
    assert out.rstrip().endswith("2 object(s) to upload, 0 to delete.")


def test_plan_writes_nothing(cli: Cli, two: Project) -> None:
    assert cli("plan", "--json").code == 0
    assert not (two.root / "artifacts.lock").exists()
    assert not (two.root / ".em" / "artifacts").exists()
    assert store_node(two.store, "/alice/default/one") is None


def test_json_has_the_stable_keys(cli: Cli, two: Project) -> None:
    code, out, _ = cli("plan", "--json")
    assert code == 0
    plan = json.loads(out)
    assert plan["changes"] is True
    assert [a["name"] for a in plan["artifacts"]] == ["one", "two"]
    for art in plan["artifacts"]:
        assert {"name", "folder", "path", "action", "upload", "delete", "modified"} <= set(art)
        assert {"alternativeName", "labels", "description", "seen", "lockChange"} <= set(art)
    two_ = plan["artifacts"][1]
    assert (two_["folder"], two_["path"], two_["action"]) == (
        "/alice/models/v1",
        "/alice/models/v1/two",
        "create",
    )
    assert (two_["upload"], two_["delete"]) == (["nested/two.txt"], [])


def test_detailed_exitcode(cli: Cli, two: Project) -> None:
    assert cli("plan", "--detailed-exitcode").code == 2
    assert cli("plan").code == 0
    assert cli("apply", "--quiet") == (0, "", "")
    assert cli("plan", "--detailed-exitcode") == (0, "No changes.\n", "")


def test_target_limits_plan_and_apply(cli: Cli, two: Project) -> None:
    code, out, _ = cli("plan", "--json", "--target", "two")
    assert code == 0
    assert [a["name"] for a in json.loads(out)["artifacts"]] == ["two"]
    assert cli("apply", "--target", "two").code == 0
    assert store_node(two.store, "/alice/models/v1/two") is not None
    assert store_node(two.store, "/alice/default/one") is None
    assert cli("plan", "--detailed-exitcode", "-t", "two").code == 0
    assert cli("plan", "--detailed-exitcode").code == 2


def test_unknown_target(cli: Cli, two: Project) -> None:
    err = one_error_line(cli("plan", "--target", "nope"))
    assert "'nope'" in err
    one_error_line(cli("apply", "--target", "nope"))


def test_missing_manifest(cli: Cli, project: Project) -> None:
    for command in ("validate", "plan", "apply"):
        assert "artifacts.yaml" in one_error_line(cli(command))
    assert "gone.yaml" in one_error_line(cli("-f", "gone.yaml", "plan"))


def test_bad_remote_scheme(cli: Cli, two: Project) -> None:
    err = one_error_line(cli("plan", "--remote", "ftp://example.org/x"))
    assert "ftp://example.org/x" in err


def test_missing_folder_without_make_folder(cli: Cli, two: Project) -> None:
    two.manifest(TWO.format(folder="models/v1", make="false"))
    err = one_error_line(cli("plan", "--target", "two"))
    assert "'two'" in err and "/alice/models/v1" in err and "make_folder" in err
    err = one_error_line(cli("apply"))
    assert "/alice/models/v1" in err
    assert store_node(two.store, "/alice/default/one") is None  # nothing half-done


def test_bad_var(cli: Cli, two: Project) -> None:
    assert "NAME=VALUE" in one_error_line(cli("plan", "--var", "novalue"))


def test_missing_source_file(cli: Cli, two: Project) -> None:
    (two.root / "data" / "one.txt").unlink()
    err = one_error_line(cli("plan", "--target", "one"))
    assert "one.txt" in err


def test_validate(cli: Cli, two: Project) -> None:
    code, out, _ = cli("validate")
    assert code == 0 and "valid (2 artifact(s))" in out


def test_schema_is_json(cli: Cli, project: Project) -> None:
    code, out, _ = cli("schema")
    assert code == 0 and "artifacts" in json.loads(out)["properties"]


def commands(cli: Cli) -> list[str]:
    code, out, _ = cli("--help")
    assert code == 0
    section = out.split("Commands:", 1)[1]
    return re.findall(r"^  (\S+)", section, re.MULTILINE)


def test_every_command_has_help(cli: Cli, project: Project) -> None:
    names = commands(cli)
    assert {"validate", "plan", "apply", "ls", "pull", "schema"} <= set(names)
    argvs = [[name] for name in names] + [["user", sub] for sub in ("add", "list", "revoke")]
    results = [cli(*argv, "--help") for argv in argvs]  # in-process: one at a time
    for argv, (code, out, err) in zip(argvs, results, strict=True):
        assert (code, err) == (0, ""), argv
        assert re.match(rf"Usage: .* {' '.join(argv)} ", out), argv


def test_long_lists_fold_unless_verbose(cli: Cli, project: Project) -> None:
    for i in range(25):
        project.write(f"many/f{i:02d}.txt", str(i))
    project.manifest("version: 1\nartifacts:\n  - name: many\n    objects:\n      - dir: many\n")
    code, out, _ = cli("plan")
    assert code == 0
    assert sum(line.startswith("    + many/") for line in out.splitlines()) == 20
    assert "... and 5 more (--verbose shows all)" in out
    code, out, _ = cli("plan", "--verbose")
    assert sum(line.startswith("    + many/") for line in out.splitlines()) == 25


def test_a_file_remote_that_is_not_a_directory_is_one_line(cli: Cli, project: Project) -> None:
    project.write("data/a.txt", "a")
    project.manifest("version: 1\nartifacts:\n  - name: a\n    objects: [{file: data/a.txt}]\n")
    project.write("not-a-dir", "x")
    code, out, err = cli("plan", "--remote", "file:not-a-dir")
    assert code == 1, (out, err)
    assert err.startswith("error: cannot open the store at ")
    assert "point the file: remote at a directory" in err and len(err.splitlines()) == 1
