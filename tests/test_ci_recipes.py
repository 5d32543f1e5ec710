"""The CI recipes in docs/ci and the pre-commit hook this repository offers."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import cli_env

ROOT = Path(__file__).resolve().parents[1]
GOOD = "version: 1\nartifacts:\n  - name: a\n    objects:\n      - file: data/a.txt\n"


def test_the_hook_names_our_console_script() -> None:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == "manifest-tool-validate"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert hook["entry"].split()[0] in scripts
    assert hook["entry"].split()[1:] == ["validate"]
    assert hook["language"] == "python" and hook["pass_filenames"] is False


@pytest.mark.parametrize("recipe", ["github-actions.yml", "gitlab-ci.yml"])
def test_recipes_validate_plan_and_apply_with_the_secret(recipe: str) -> None:
    text = (ROOT / "docs" / "ci" / recipe).read_text()
    yaml.safe_load(text)  # parses
    for step in ("manifest-tool validate", "plan --detailed-exitcode", "manifest-tool apply"):
        assert step in text
    assert "MANIFEST_TOOL_API_KEY" in text


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def _try_repo(repo: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = cli_env(PRE_COMMIT_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(ROOT),
         "manifest-tool-validate", "--all-files"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.skipif(importlib.util.find_spec("pre_commit") is None, reason="no pre-commit")
@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout")
def test_pre_commit_try_repo_runs_validate(tmp_path: Path) -> None:
    repo = tmp_path / "user-repo"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "a.txt").write_text("a\n")
    (repo / "artifacts.yaml").write_text(GOOD)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    home = tmp_path / "pre-commit-home"
    passed = _try_repo(repo, home)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "Passed" in passed.stdout
    (repo / "artifacts.yaml").write_text(GOOD.replace("data/a.txt", "data/missing.txt"))
    failed = _try_repo(repo, home)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "data/missing.txt" in failed.stdout
