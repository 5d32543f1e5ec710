"""Guard tests: the README's commands and example are the ones that work."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _quick_start() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("    ")]


def test_quick_start_has_two_commands_and_ci_runs_the_test_one() -> None:
    commands = _quick_start()
    assert len(commands) == 2
    assert "manifest-tool -f artifacts.yaml.example apply" in commands[0]
    test_command = commands[1].split("&&")[-1].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MANIFEST_TOOL_", "EM_"))}
    return {**env, "MANIFEST_TOOL_USER": "readme", "HOME": str(tmp_path)}


def test_quick_start_apply_runs_on_a_fresh_copy_and_is_idempotent(tmp_path: Path) -> None:
    shutil.copy(ROOT / "artifacts.yaml.example", tmp_path)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    run = [sys.executable, "-m", "manifest_tool", "-f", "artifacts.yaml.example", "apply"]
    first = subprocess.run(run, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "Apply complete: 8 object(s) uploaded" in first.stdout
    second = subprocess.run(run, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "No changes."


def test_python_api_example_runs_as_written(tmp_path: Path) -> None:
    block = re.search(r"```python\n(.*?)```", README, re.S)
    assert block is not None
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    proc = subprocess.run(
        [sys.executable, "-c", block.group(1)],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_every_command_has_help() -> None:
    top = subprocess.run(
        [sys.executable, "-m", "manifest_tool", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = re.findall(r"^  (\w+)\s", top.split("Commands:", 1)[1], re.M)
    assert {"validate", "plan", "apply", "ls", "pull", "schema"} <= set(names)
    for name in names:
        proc = subprocess.run(
            [sys.executable, "-m", "manifest_tool", name, "--help"], capture_output=True, text=True
        )
        assert proc.returncode == 0 and "Usage:" in proc.stdout, name


def test_versions_example_runs_as_written(tmp_path: Path) -> None:
    """The Versions section's shell block, run by bash in an empty directory."""
    section = README.split("## Versions", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, args in (("manifest-tool", "-m manifest_tool"), ("python", "")):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {args} "$@"\n')
        shim.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    env = {**_env(tmp_path), "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.group(1)],
        cwd=work, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "+ mnist: version v2 at /readme/default/mnist" in out
    assert "baseline -> v1" in out
    listed = [line.split()[:2] for line in out.splitlines() if re.match(r"v\d+ ", line)]
    assert listed == [["v2", "latest,prod"], ["v1", "baseline"]]
    assert "label,1" in out.splitlines()
    assert "'data/labels.csv'" in out  # load_artifact of v1
