"""Guard: the repository's example manifest validates, applies, and re-applies as a no-op."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import Cli, Project, store_node, tree

REPO = Path(__file__).resolve().parent.parent


def copy_example(project: Project) -> None:
    shutil.copy2(REPO / "artifacts.yaml.example", project.root / "artifacts.yaml.example")
    shutil.copytree(REPO / "examples", project.root / "examples")


def test_example_applies_then_is_a_no_op(cli: Cli, project: Project) -> None:
    copy_example(project)
    assert cli("-f", "artifacts.yaml.example", "validate").code == 0
    code, out, err = cli("-f", "artifacts.yaml.example", "apply")
    assert code == 0, err
    assert "Apply complete" in out
    assert cli("-f", "artifacts.yaml.example", "apply") == (0, "No changes.\n", "")
    assert cli("-f", "artifacts.yaml.example", "plan", "--detailed-exitcode").code == 0
    assert (project.root / "artifacts.yaml.lock").is_file()  # <manifest stem>.lock


def test_example_uses_every_kind_of_object(cli: Cli, project: Project) -> None:
    copy_example(project)
    code, out, err = cli("-f", "artifacts.yaml.example", "plan", "--json")
    assert code == 0, err
    mnist = next(a for a in json.loads(out)["artifacts"] if a["name"] == "mnist-sample")
    keys = set(mnist["upload"])
    assert "train/train.csv" in keys and "test.csv" in keys
    assert any(k.startswith("images/") for k in keys)
    assert {"meta/train.json", "meta/test.json"} <= keys
    assert not any("tmp" in k for k in keys)  # excluded by the glob


def test_example_pulls_back_byte_for_byte(cli: Cli, project: Project) -> None:
    copy_example(project)
    assert cli("-f", "artifacts.yaml.example", "apply", "--quiet").code == 0
    node = store_node(project.store, "/alice/examples/datasets/mnist-sample")
    assert node is not None and node["labels"] == ["dataset", "mnist"]
    dest = project.root.parent / "pulled"
    assert (
        cli("-f", "artifacts.yaml.example", "pull", "mnist-sample", "--dest", str(dest)).code == 0
    )
    data = project.root / "examples" / "data"
    got = tree(dest)
    assert got["train/train.csv"] == (data / "train.csv").read_bytes()
    assert got["meta/test.json"] == (data / "meta" / "test.json").read_bytes()
    assert "raw/mnist.tar.gz" in (got.get("references.yaml") or b"").decode()
