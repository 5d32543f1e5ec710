"""``serve`` and ``user``: bad names, a mistyped --data and a busy port are one line."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from conftest import run_cli


@pytest.fixture
def data(tmp_path: Path) -> Path:
    code, _, err = run_cli("user", "add", "alice", "--data", "store", "--init", cwd=tmp_path)
    assert code == 0 and err == "", err
    return tmp_path / "store"


@pytest.mark.parametrize("name", ["alice ", " alice", "Alice", "-x", "_x", "a/b", "a.b", "é", ""])
def test_user_add_refuses_names_outside_the_pattern(data: Path, name: str) -> None:
    code, out, err = run_cli("user", "add", "--data", str(data), "--", name, cwd=data.parent)
    assert code == 1 and out == ""
    assert err.startswith("error: invalid user name") and err.count("\n") == 1, err
    code, out, _ = run_cli("user", "list", "--data", str(data), cwd=data.parent)
    assert [line.split("\t")[0] for line in out.splitlines()] == ["alice"]


@pytest.mark.parametrize("name", ["bob", "b0b_-x", "9"])
def test_user_add_accepts_names_in_the_pattern(data: Path, name: str) -> None:
    code, out, err = run_cli("user", "add", name, "--data", str(data), cwd=data.parent)
    assert code == 0 and err == "" and len(out.strip()) == 36


@pytest.mark.parametrize(
    "argv",
    [
        ["user", "list"],
        ["user", "add", "bob"],
        ["user", "revoke", "alice"],
        ["serve", "--port", "0"],
    ],
)
def test_a_data_dir_that_is_not_a_store_is_refused_without_init(
    tmp_path: Path, argv: list[str]
) -> None:
    code, out, err = run_cli(*argv, "--data", "TYPO", cwd=tmp_path, timeout=30)
    assert code == 1 and out == ""
    assert err == (
        "error: TYPO is not a manifest-tool store (no store.sqlite); "
        "pass --init to create one there\n"
    )
    assert not (tmp_path / "TYPO").exists()


def test_a_busy_port_is_one_line(data: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        argv = ("serve", "--data", str(data), "--port", str(port))
        code, out, err = run_cli(*argv, cwd=data.parent, timeout=30)
    assert (code, out) == (1, "")
    assert err == f"error: port {port} on 127.0.0.1 is in use\n"
