"""expand / expand_all on real trees under tmp_path."""

from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manifest_tool.errors import ManifestInvalid
from manifest_tool.manifest import load_manifest
from manifest_tool.model import Expansion, Manifest, Reference
from manifest_tool.paths import check_key
from manifest_tool.sources import expand, expand_all, static_prefix


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory, also the working directory, so messages say artifacts.yaml."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    return project


def touch(root: Path, *names: str, content: str = "x") -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def manifest(root: Path, objects: str, name: str = "a") -> Manifest:
    """A manifest with one artifact whose objects list is ``objects`` (YAML, from line 5)."""
    body = textwrap.indent(textwrap.dedent(objects), "      ")
    text = f"version: 1\nartifacts:\n  - name: {name}\n    objects:\n{body}"
    (root / "artifacts.yaml").write_text(text)
    return load_manifest(Path("artifacts.yaml"), env={})


def expanded(root: Path, objects: str) -> Expansion:
    m = manifest(root, objects)
    return expand(m, m.artifacts[0])


def keys(expansion: Expansion) -> list[str]:
    return [f.key for f in expansion.files]


def problems(root: Path, objects: str) -> list[str]:
    m = manifest(root, objects)
    with pytest.raises(ManifestInvalid) as info:
        expand(m, m.artifacts[0])
    return info.value.problems


# --- each kind -------------------------------------------------------------------------


def test_file(root: Path) -> None:
    touch(root, "data/train.csv", content="abc")
    exp = expanded(root, "- file: data/train.csv\n")
    (f,) = exp.files
    assert f.key == "train.csv"
    assert f.source == str(root / "data/train.csv")
    assert os.path.isabs(f.source)
    st_ = os.stat(root / "data/train.csv")
    assert (f.size, f.changed_ns, f.inode) == (3, st_.st_ctime_ns, st_.st_ino)
    assert exp.references == () and exp.warnings == ()


@pytest.mark.parametrize(
    ("obj_path", "key"),
    [
        ("''", "train.csv"),
        ("renamed.csv", "renamed.csv"),
        ("train/", "train/train.csv"),
        ("/abs/x.csv", "abs/x.csv"),
        ("/folder/", "folder/train.csv"),
    ],
)
def test_file_obj_path_rules(root: Path, obj_path: str, key: str) -> None:
    touch(root, "data/train.csv")
    exp = expanded(root, f"- file: data/train.csv\n  obj_path: {obj_path}\n")
    assert keys(exp) == [key]


def test_dir(root: Path) -> None:
    touch(root, "data/images/b.png", "data/images/a.png", "data/images/sub/c.png", "other.txt")
    exp = expanded(root, "- dir: data/images\n")
    assert keys(exp) == ["images/a.png", "images/b.png", "images/sub/c.png"]
    assert exp.files[2].source == str(root / "data/images/sub/c.png")


def test_dir_with_obj_path(root: Path) -> None:
    touch(root, "data/images/a.png")
    assert keys(expanded(root, "- dir: data/images\n  obj_path: pics/\n")) == ["pics/images/a.png"]
    assert keys(expanded(root, "- dir: data/images/\n  obj_path: pics\n")) == ["pics/a.png"]


def test_reference(root: Path) -> None:
    exp = expanded(root, "- reference: https://e.org/x/raw.tgz?v=1\n  obj_path: raw/\n")
    assert exp.references == (Reference("raw/raw.tgz", "https://e.org/x/raw.tgz?v=1"),)
    assert exp.files == ()


def test_glob_double_star_and_exclude_with_negation(root: Path) -> None:
    touch(
        root,
        "data/a.json",
        "data/x/b.json",
        "data/x/y/c.json",
        "data/tmp/d.json",
        "data/x/tmp/e.json",
        "data/keep/tmp/f.json",
        "data/g.csv",
    )
    exp = expanded(
        root,
        """\
        - glob: "data/**/*.json"
          exclude: ["**/tmp/**", "!data/keep/tmp/f.json"]
        """,
    )
    assert keys(exp) == [
        "data/a.json",
        "data/keep/tmp/f.json",
        "data/x/b.json",
        "data/x/y/c.json",
    ]


def test_glob_single_star_stays_in_its_folder(root: Path) -> None:
    touch(root, "data/a.csv", "data/sub/b.csv")
    assert keys(expanded(root, "- glob: data/*.csv\n")) == ["data/a.csv"]


def test_glob_without_slash_matches_at_any_depth(root: Path) -> None:
    touch(root, "a.csv", "data/b.csv", "data/deep/c.csv", "data/d.txt")
    assert keys(expanded(root, "- glob: '*.csv'\n")) == ["a.csv", "data/b.csv", "data/deep/c.csv"]


def test_glob_question_mark_and_set(root: Path) -> None:
    touch(root, "d/f1.txt", "d/f2.txt", "d/f3.txt", "d/f10.txt")
    assert keys(expanded(root, "- glob: 'd/f[12].txt'\n")) == ["d/f1.txt", "d/f2.txt"]
    assert keys(expanded(root, "- glob: 'd/f?.txt'\n")) == ["d/f1.txt", "d/f2.txt", "d/f3.txt"]


def test_glob_base_and_obj_path(root: Path) -> None:
    touch(root, "data/x/a.json", "data/b.json")
    exp = expanded(root, "- glob: 'data/**/*.json'\n  base: data\n  obj_path: meta\n")
    assert keys(exp) == ["meta/b.json", "meta/x/a.json"]
    exp = expanded(root, "- glob: 'data/**/*.json'\n  base: data/\n  obj_path: /meta/\n")
    assert keys(exp) == ["meta/b.json", "meta/x/a.json"]


def test_glob_no_match_ignore(root: Path) -> None:
    exp = expanded(root, "- glob: '*.none'\n  if_no_files_found: ignore\n")
    assert exp.files == () and exp.warnings == ()


def test_glob_no_match_warn_is_a_warning_not_an_error(root: Path) -> None:
    touch(root, "x.csv")
    exp = expanded(root, "- file: x.csv\n- glob: 'data/*.none'\n  if_no_files_found: warn\n")
    assert keys(exp) == ["x.csv"]
    assert exp.warnings == ("artifacts.yaml:6: artifact 'a': glob 'data/*.none' matched no files",)


def test_hidden_exclude(root: Path) -> None:
    touch(root, "d/.env", "d/.cache/x", "d/ok/.hidden", "d/ok/seen")
    assert keys(expanded(root, "- dir: d\n")) == [
        "d/.cache/x",
        "d/.env",
        "d/ok/.hidden",
        "d/ok/seen",
    ]
    assert keys(expanded(root, "- dir: d\n  hidden: exclude\n")) == ["d/ok/seen"]
    assert keys(expanded(root, "- glob: 'd/**'\n  hidden: exclude\n")) == ["d/ok/seen"]


def test_hidden_directory_named_explicitly_is_used(root: Path) -> None:
    touch(root, ".config/a.yaml", ".config/.b")
    assert keys(expanded(root, "- dir: .config\n  hidden: exclude\n")) == [".config/a.yaml"]


def test_em_dir_lock_file_and_manifest_are_never_included(root: Path) -> None:
    touch(root, ".em/store/blob", ".em/artifacts/a/x", "artifacts.lock", "data.csv", "sub/.em/y")
    for objects in ("- glob: '**'\n", "- glob: '**/*'\n", "- dir: .\n  obj_path: all\n"):
        assert keys(expanded(root, objects)) == [
            k if objects.startswith("- glob") else f"all/{k}" for k in ["data.csv", "sub/.em/y"]
        ]


# --- symlinks --------------------------------------------------------------------------


@pytest.fixture
def linked(root: Path, tmp_path: Path) -> Path:
    """d/ holds a file, a link to a file in the tree, and a link to a dir in the tree."""
    touch(root, "d/real.txt", "shared/s.txt")
    (root / "d" / "alias.txt").symlink_to(root / "d" / "real.txt")
    (root / "d" / "shared").symlink_to(root / "shared")
    return root


def test_symlinks_follow_inside_the_tree(linked: Path) -> None:
    exp = expanded(linked, "- dir: d\n")
    assert keys(exp) == ["d/alias.txt", "d/real.txt", "d/shared/s.txt"]
    alias = exp.files[0]
    assert alias.source == str(linked / "d" / "alias.txt")
    assert alias.inode == os.stat(linked / "d" / "real.txt").st_ino


def test_symlinks_skip(linked: Path) -> None:
    assert keys(expanded(linked, "- dir: d\n  symlinks: skip\n")) == ["d/real.txt"]
    assert keys(expanded(linked, "- glob: 'd/**'\n  symlinks: skip\n")) == ["d/real.txt"]


def test_symlinks_error(linked: Path) -> None:
    assert problems(linked, "- dir: d\n  symlinks: error\n") == [
        "artifacts.yaml:5: artifact 'a': dir 'd': 'd/alias.txt' is a symlink "
        "(remove it, or set symlinks: skip)",
        "artifacts.yaml:5: artifact 'a': dir 'd': 'd/shared' is a symlink "
        "(remove it, or set symlinks: skip)",
    ]


def test_symlink_leaving_the_tree(root: Path, tmp_path: Path) -> None:
    touch(tmp_path, "outside/secret.txt")
    touch(root, "d/in.txt")
    (root / "d" / "out").symlink_to(tmp_path / "outside")
    assert problems(root, "- dir: d\n") == [
        f"artifacts.yaml:5: artifact 'a': dir 'd': symlink 'd/out' points to "
        f"'{tmp_path / 'outside'}', outside the manifest's directory "
        "(set symlinks: follow-external to allow it, or symlinks: skip)"
    ]
    exp = expanded(root, "- dir: d\n  symlinks: follow-external\n")
    assert keys(exp) == ["d/in.txt", "d/out/secret.txt"]


def test_file_symlink_leaving_the_tree(root: Path, tmp_path: Path) -> None:
    touch(tmp_path, "outside.txt")
    (root / "x.txt").symlink_to(tmp_path / "outside.txt")
    assert problems(root, "- file: x.txt\n") == [
        f"artifacts.yaml:5: artifact 'a': file 'x.txt' resolves to '{tmp_path / 'outside.txt'}', "
        "outside the manifest's directory (copy it in, or set symlinks: follow-external)"
    ]


def test_broken_symlink(root: Path) -> None:
    (root / "d").mkdir()
    (root / "d" / "gone").symlink_to(root / "nowhere")
    assert problems(root, "- dir: d\n") == [
        "artifacts.yaml:5: artifact 'a': dir 'd': symlink 'd/gone' is broken (fix or remove it)"
    ]


def test_symlink_cycle_is_reported_not_followed_forever(root: Path) -> None:
    touch(root, "d/x.txt")
    (root / "d" / "loop").symlink_to(root / "d")
    assert problems(root, "- dir: d\n") == [
        f"artifacts.yaml:5: artifact 'a': dir 'd': symlink 'd/loop' loops back to "
        f"'{os.path.realpath(root / 'd')}' (remove it)"
    ]


# --- problems --------------------------------------------------------------------------


def test_missing_file(root: Path) -> None:
    assert problems(root, "- file: data/train.csv\n") == [
        "artifacts.yaml:5: artifact 'a': file 'data/train.csv' does not exist "
        "(create it or fix the path)"
    ]


def test_file_that_is_a_directory(root: Path) -> None:
    (root / "data").mkdir()
    assert problems(root, "- file: data\n") == [
        "artifacts.yaml:5: artifact 'a': file 'data' is a directory (use dir: for it)"
    ]


def _as_nobody(root: Path, objects: str) -> list[str]:
    """``problems`` in a forked child that has given up root, which reads everything."""
    for folder in (root, *root.parents):
        folder.chmod(folder.stat().st_mode | 0o005)  # let 'nobody' reach the manifest
    m = manifest(root, objects)  # written as root, read by the child
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, report the problems, exit
        os.close(reader)
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                expand(m, m.artifacts[0])
                found = "no problem found"
            except ManifestInvalid as err:
                found = "\n".join(err.problems)
        except BaseException as err:
            found = f"child failed: {err!r}"
        os.write(writer, found.encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as fh:
        out = fh.read().decode()
    os.waitpid(pid, 0)
    return out.split("\n")


def test_unreadable_file(root: Path) -> None:
    touch(root, "x.csv")
    (root / "x.csv").chmod(0)
    found = (
        _as_nobody(root, "- file: x.csv\n")
        if os.geteuid() == 0
        else problems(root, "- file: x.csv\n")
    )
    assert found == [
        "artifacts.yaml:5: artifact 'a': file 'x.csv' is not readable (check its permissions)"
    ]


def test_missing_dir(root: Path) -> None:
    assert problems(root, "- dir: data/images\n") == [
        "artifacts.yaml:5: artifact 'a': dir 'data/images' does not exist "
        "(create it or fix the path)"
    ]


def test_dir_that_is_a_file(root: Path) -> None:
    touch(root, "x.csv")
    assert problems(root, "- dir: x.csv\n") == [
        "artifacts.yaml:5: artifact 'a': dir 'x.csv' is not a directory (use file: for it)"
    ]


def test_glob_without_match_is_an_error_by_default(root: Path) -> None:
    touch(root, "data/a.csv")
    assert problems(root, "- glob: 'data/**/*.json'\n") == [
        "artifacts.yaml:5: artifact 'a': glob 'data/**/*.json' matched no files "
        "(fix the pattern, or set if_no_files_found: warn)"
    ]


def test_glob_match_outside_base(root: Path) -> None:
    touch(root, "data/a.json", "other/b.json")
    assert problems(root, "- glob: '**/*.json'\n  base: data\n") == [
        "artifacts.yaml:5: artifact 'a': 'other/b.json' matches but is not under base 'data' "
        "(widen base)"
    ]


def test_glob_landing_on_a_reserved_name(root: Path) -> None:
    touch(root, "metadata.yaml")
    assert problems(root, "- glob: '*.yaml'\n") == [
        "artifacts.yaml:5: artifact 'a': 'metadata.yaml' would land on the reserved "
        "'metadata.yaml' (set obj_path)"
    ]
    assert keys(expanded(root, "- glob: '*.yaml'\n  obj_path: m\n")) == ["m/metadata.yaml"]


def test_two_sources_on_one_key(root: Path) -> None:
    touch(root, "data/x.csv", "x.csv")
    assert problems(root, "- glob: 'data/*.csv'\n  base: data\n- file: x.csv\n") == [
        "artifacts.yaml:7: artifact 'a': object path 'x.csv' comes from both file 'data/x.csv' "
        "(glob 'data/*.csv', line 5) and file 'x.csv' "
        "(give one of them another obj_path, or exclude it)"
    ]


def test_file_and_reference_on_one_key_across_kinds(root: Path) -> None:
    touch(root, "d/raw.tgz")
    assert problems(root, "- glob: 'd/*'\n- reference: s3://b/raw.tgz\n  obj_path: d/\n") == [
        "artifacts.yaml:6: artifact 'a': object path 'd/raw.tgz' comes from both file "
        "'d/raw.tgz' (glob 'd/*', line 5) and reference 's3://b/raw.tgz' "
        "(give one of them another obj_path, or exclude it)"
    ]


def test_many_clashes_are_summarised(root: Path) -> None:
    touch(root, *[f"d/f{i:02d}" for i in range(15)])
    found = problems(root, "- dir: d\n- glob: 'd/*'\n")
    assert len(found) == 11
    assert found[-1] == "artifacts.yaml:6: artifact 'a': ... and 5 more object paths taken twice"


def test_multiple_problems_in_one_run(root: Path) -> None:
    touch(root, "ok.csv")
    text = textwrap.dedent(
        """\
        version: 1
        artifacts:
          - name: first
            objects:
              - file: missing.csv
              - dir: nodir
          - name: second
            objects:
              - file: ok.csv
              - glob: '*.json'
        """
    )
    (root / "artifacts.yaml").write_text(text)
    m = load_manifest(Path("artifacts.yaml"))
    with pytest.raises(ManifestInvalid) as info:
        expand_all(m, m.artifacts)
    assert info.value.problems == [
        "artifacts.yaml:5: artifact 'first': file 'missing.csv' does not exist "
        "(create it or fix the path)",
        "artifacts.yaml:6: artifact 'first': dir 'nodir' does not exist "
        "(create it or fix the path)",
        "artifacts.yaml:10: artifact 'second': glob '*.json' matched no files "
        "(fix the pattern, or set if_no_files_found: warn)",
    ]


def test_expand_all(root: Path) -> None:
    touch(root, "a.csv", "b.csv")
    text = "version: 1\nartifacts:\n  - {name: x, objects: [{file: a.csv}]}\n" + (
        "  - {name: y, objects: [{file: b.csv}]}\n"
    )
    (root / "artifacts.yaml").write_text(text)
    m = load_manifest(Path("artifacts.yaml"))
    result = expand_all(m, m.artifacts)
    assert {name: keys(e) for name, e in result.items()} == {"x": ["a.csv"], "y": ["b.csv"]}


def test_manifest_outside_the_working_directory_is_shown_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "elsewhere"
    project.mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    (project / "artifacts.yaml").write_text(
        "version: 1\nartifacts: [{name: a, objects: [{file: nope}]}]\n"
    )
    m = load_manifest(project / "artifacts.yaml")
    with pytest.raises(ManifestInvalid) as info:
        expand(m, m.artifacts[0])
    assert info.value.problems[0].startswith(f"{project}/artifacts.yaml:2: artifact 'a': file")


# --- glob helpers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        ("data/**/*.json", "data"),
        ("data/x/*.csv", "data/x"),
        ("data/x/y.csv", "data/x"),
        ("*.csv", ""),
        ("data/", ""),
        ("**/x", ""),
        ("a/b*/c", "a"),
        ("a/[bc]/d", "a"),
    ],
)
def test_static_prefix(pattern: str, prefix: str) -> None:
    assert static_prefix(pattern) == prefix


names = st.text(  # control characters are refused as keys: see the test after this one
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cc",), exclude_characters="/\\\x00"
    ),
    min_size=1,
    max_size=8,
).filter(lambda n: n not in (".", ".."))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(paths=st.lists(st.lists(names, min_size=1, max_size=3), min_size=1, max_size=6))
def test_dir_and_glob_keys_are_valid_keys(tmp_path: Path, paths: list[list[str]]) -> None:
    project = Path(tempfile.mkdtemp(dir=tmp_path))
    made = set()
    for parts in paths:
        target = project.joinpath("tree", *parts)
        if any(p.exists() and not p.is_dir() for p in target.parents) or target.is_dir():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("x")
        made.add(target)
    (project / "artifacts.yaml").write_text(
        "version: 1\nartifacts:\n  - name: a\n    objects:\n      - dir: tree\n"
        "  - name: b\n    objects:\n      - glob: 'tree/**'\n        obj_path: g\n"
    )
    m = load_manifest(project / "artifacts.yaml")
    for exp in expand_all(m, m.artifacts).values():
        assert len(exp.files) == len(made)
        assert all(check_key(f.key) == f.key for f in exp.files)
        assert [f.key for f in exp.files] == sorted(f.key for f in exp.files)


def test_a_file_name_with_a_control_character_is_a_clear_problem(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "bad\nname").write_text("x")
    (tmp_path / "artifacts.yaml").write_text(
        "version: 1\nartifacts:\n  - name: a\n    objects:\n      - dir: tree\n"
    )
    m = load_manifest(tmp_path / "artifacts.yaml")
    with pytest.raises(ManifestInvalid) as err:
        expand_all(m, m.artifacts)
    assert "contains a control character" in str(err.value)


def test_reference_keys_follow_the_documented_rule(tmp_path: Path) -> None:
    """The manifest's rule: the last segment of the URI's path, without query, fragment
    or trailing '/'; a URI without a path has no name and needs obj_path."""
    (tmp_path / "artifacts.yaml").write_text(
        "version: 1\nartifacts:\n  - name: a\n    objects:\n"
        "      - {reference: 'https://e.org/d/m.tar.gz/?x=1#f', obj_path: raw/}\n"
        "      - {reference: 's3://bucket/w.bin'}\n"
    )
    m = load_manifest(tmp_path / "artifacts.yaml")
    refs = expand_all(m, m.artifacts)["a"].references
    assert [r.key for r in refs] == ["raw/m.tar.gz", "w.bin"]
    (tmp_path / "artifacts.yaml").write_text(
        "version: 1\nartifacts:\n  - name: a\n    objects:\n      - reference: https://e.org/\n"
    )
    with pytest.raises(ManifestInvalid) as err:
        load_manifest(tmp_path / "artifacts.yaml")
    assert "has no file name to use as its object path" in str(err.value)


def test_a_walk_yields_its_files_in_key_order(root: Path) -> None:
    """Files beside directories whose names sort around them ('-' < '.' < '/' < '0'),
    and links to a directory and a file: the walk's own order is the keys' order, so the
    expansion needs no sort, and the sources follow their keys."""
    touch(root, "d/x-1", "d/x.d/f", "d/x.txt", "d/x/f", "d/x0", "d/x/y/z", "d/x/a", "d/w")
    (root / "d" / "x.e").symlink_to(root / "d" / "x")
    (root / "d" / "x.f").symlink_to(root / "d" / "x.txt")
    from manifest_tool.walker import Walker

    walker = Walker(os.path.realpath(root), frozenset(), "follow", False, "k/", "d/")
    found = walker.walk(str(root / "d"))
    expected = [
        "k/w", "k/x-1", "k/x.d/f", "k/x.e/a", "k/x.e/f", "k/x.e/y/z", "k/x.f", "k/x.txt",
        "k/x/a", "k/x/f", "k/x/y/z", "k/x0",
    ]  # fmt: skip
    assert found.keys == expected == sorted(expected)
    assert found.sorted() is found
    assert [os.path.relpath(s, root) for s in found.sources()] == [
        "d/" + k[2:] for k in expected
    ]
    assert keys(expanded(root, "- dir: d\n")) == [f"d/{k[2:]}" for k in expected]
