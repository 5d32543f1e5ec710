"""load_manifest: every bad manifest gets its exact message at its exact line."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from manifest_tool.errors import ManifestInvalid
from manifest_tool.manifest import SCHEMA_PATH, load_manifest, schema_text
from manifest_tool.model import ArtifactSpec, ObjectSpec

NAME_RULE = "1 to 40 of A-Z a-z 0-9 _ -, starting and ending with a letter or digit"
OBJECT_KEYS = (
    "file, dir, glob, reference, obj_path, exclude, base, if_no_files_found, symlinks, hidden"
)
ARTIFACT_KEYS = (
    "name, description, labels, folder, make_folder, conflict_strategy, versions, keep_versions,"
    " aliases, alternative_name, objects"
)
KEYS_HINT = (
    "keys never live in the manifest (set MANIFEST_TOOL_API_KEY or use the T9k config file, "
    "and remove it from here)"
)
RELATIVE = "paths are relative to the manifest's directory"

HEAD = "version: 1\nartifacts:\n  - name: a\n    objects:\n"


def write(tmp_path: Path, text: str, name: str = "artifacts.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path, **kwargs: object) -> list[str]:
    with pytest.raises(ManifestInvalid) as info:
        load_manifest(path, **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


BAD: list[tuple[str, str, list[str]]] = [
    (
        "unknown top-level key",
        "version: 1\nartifact: []\nartifacts:\n  - name: a\n    objects: [{file: x}]\n",
        [
            "2:1: $.artifact: unknown key 'artifact' "
            "(allowed: version, vars, allow_env, remote, defaults, artifacts, moved)"
        ],
    ),
    (
        "unknown artifact key",
        "version: 1\nartifacts:\n  - name: a\n    lables: [x]\n    objects: [{file: x}]\n",
        [f"4:5: $.artifacts[0].lables: unknown key 'lables' (allowed: {ARTIFACT_KEYS})"],
    ),
    (
        "unknown object key",
        HEAD + "      - file: x\n        obj_pth: y\n",
        [f"6:9: $.artifacts[0].objects[0].obj_pth: unknown key 'obj_pth' (allowed: {OBJECT_KEYS})"],
    ),
    (
        "labels not a list",
        "version: 1\nartifacts:\n  - name: a\n    labels: x\n    objects: [{file: x}]\n",
        ["4:5: $.artifacts[0].labels: expected a list, got a string ('x')"],
    ),
    (
        "make_folder not a boolean",
        "version: 1\nartifacts:\n  - name: a\n    make_folder: 'yes'\n    objects: [{file: x}]\n",
        ["4:5: $.artifacts[0].make_folder: expected true or false, got a string ('yes')"],
    ),
    (
        "folder not a string",
        "version: 1\nartifacts:\n  - name: a\n    folder: 3\n    objects: [{file: x}]\n",
        ["4:5: $.artifacts[0].folder: expected a string, got a number (3)"],
    ),
    (
        "artifacts not a list",
        "version: 1\nartifacts: {name: a}\n",
        ["2:1: $.artifacts: expected a list, got a mapping"],
    ),
    (
        "name too long",
        "version: 1\nartifacts:\n  - name: " + "a" * 41 + "\n    objects: [{file: x}]\n",
        [f"3:5: $.artifacts[0].name: invalid name '{'a' * 41}': {NAME_RULE}"],
    ),
    (
        "name starts with '-'",
        "version: 1\nartifacts:\n  - name: -a\n    objects: [{file: x}]\n",
        [f"3:5: $.artifacts[0].name: invalid name '-a': {NAME_RULE}"],
    ),
    (
        "name with a bad character",
        "version: 1\nartifacts:\n  - name: a.b\n    objects: [{file: x}]\n",
        [f"3:5: $.artifacts[0].name: invalid name 'a.b': {NAME_RULE}"],
    ),
    (
        "name ends with '_'",
        "version: 1\nartifacts:\n  - name: a_\n    objects: [{file: x}]\n",
        [f"3:5: $.artifacts[0].name: invalid name 'a_': {NAME_RULE}"],
    ),
    (
        "missing name",
        "version: 1\nartifacts:\n  - objects: [{file: x}]\n",
        ["3:5: $.artifacts[0]: missing required key 'name'"],
    ),
    (
        "bad conflict_strategy",
        "version: 1\nartifacts:\n  - name: a\n    conflict_strategy: merge\n"
        "    objects: [{file: x}]\n",
        [
            "4:5: $.artifacts[0].conflict_strategy: invalid conflict_strategy 'merge' "
            "(choose skip, error, new, replace)"
        ],
    ),
    (
        "bad default conflict_strategy",
        "version: 1\ndefaults: {conflict_strategy: overwrite}\nartifacts:\n  - name: a\n"
        "    objects: [{file: x}]\n",
        [
            "2:12: $.defaults.conflict_strategy: invalid conflict_strategy 'overwrite' "
            "(choose skip, error, new, replace)"
        ],
    ),
    ("missing artifacts", "version: 1\n", ["1:1: $: missing required key 'artifacts'"]),
    (
        "empty artifacts",
        "version: 1\nartifacts: []\n",
        ["2:1: $.artifacts: artifacts is empty (declare at least one artifact)"],
    ),
    (
        "empty objects",
        "version: 1\nartifacts:\n  - name: a\n    objects: []\n",
        [
            "4:5: $.artifacts[0].objects: objects is empty "
            "(list at least one file, dir, glob or reference)"
        ],
    ),
    (
        "object with two kinds",
        HEAD + "      - file: x\n        dir: y\n",
        [
            "5:9: $.artifacts[0].objects[0]: an object needs exactly one of file, dir, glob, "
            "reference (it has file and dir)"
        ],
    ),
    (
        "object with no kind",
        HEAD + "      - obj_path: x\n",
        [
            "5:9: $.artifacts[0].objects[0]: an object needs exactly one of file, dir, glob, "
            "reference (it has none)"
        ],
    ),
    (
        "object not a mapping",
        HEAD + "      - x.csv\n",
        ["5:9: $.artifacts[0].objects[0]: expected a mapping, got a string ('x.csv')"],
    ),
    (
        "bad if_no_files_found",
        HEAD + "      - glob: '*.x'\n        if_no_files_found: maybe\n",
        [
            "6:9: $.artifacts[0].objects[0].if_no_files_found: invalid if_no_files_found "
            "'maybe' (choose error, warn, ignore)"
        ],
    ),
    (
        "bad symlinks policy",
        HEAD + "      - dir: d\n        symlinks: always\n",
        [
            "6:9: $.artifacts[0].objects[0].symlinks: invalid symlinks 'always' "
            "(choose follow, follow-external, skip, error)"
        ],
    ),
    (
        "exclude on a file",
        HEAD + "      - file: x\n        exclude: ['*.tmp']\n",
        ["6:9: $.artifacts[0].objects[0].exclude: 'exclude' applies only to dir and glob objects"],
    ),
    (
        "symlinks on a reference",
        HEAD + "      - reference: s3://b/k\n        symlinks: skip\n",
        [
            "6:9: $.artifacts[0].objects[0].symlinks: "
            "'symlinks' applies only to dir and glob objects"
        ],
    ),
    (
        "undefined template variable",
        "version: 1\nartifacts:\n  - name: a\n    description: 'run {{ vars.foo }}'\n"
        "    objects: [{file: x}]\n",
        [
            "4:18: $.artifacts[0].description: undefined variable 'foo' "
            "(define it under vars: or pass --var foo=...)"
        ],
    ),
    (
        "undefined environment variable",
        "version: 1\nvars:\n  run: '{{ env.NO_SUCH_VAR }}'\nartifacts:\n  - name: a\n"
        "    objects: [{file: x}]\n",
        [
            "3:8: $.vars.run: undefined environment variable 'NO_SUCH_VAR' "
            "(set it, or write {{ env.NO_SUCH_VAR | default('...') }})"
        ],
    ),
    (
        "bare undefined name",
        "version: 1\nartifacts:\n  - name: a\n    description: '{{ run }}'\n"
        "    objects: [{file: x}]\n",
        [
            "4:18: $.artifacts[0].description: undefined name 'run' "
            "(only env and vars are in scope: write {{ vars.run }})"
        ],
    ),
    (
        "template syntax error",
        HEAD + "      - file: '{{ x'\n",
        [
            "5:15: $.artifacts[0].objects[0].file: template syntax error: unexpected end of "
            "template, expected 'end of print statement'."
        ],
    ),
    (
        "unsafe template",
        HEAD + "      - file: '{{ ().__class__ }}'\n",
        [
            "5:15: $.artifacts[0].objects[0].file: template error: "
            "access to attribute '__class__' of 'tuple' object is unsafe."
        ],
    ),
    (
        "YAML syntax error",
        "version: 1\nartifacts:\n  - name: a\n   objects: [{file: x}]\n",
        [
            "4:4: expected <block end>, but found '<block mapping start>' "
            "(while parsing a block collection on line 3): check the indentation "
            "(keys of one mapping line up in one column)"
        ],
    ),
    (
        "YAML tab indentation",
        "version: 1\nartifacts:\n  - name: a\n\tobjects: [{file: x}]\n",
        [
            "4:1: found character '\\t' that cannot start any token: "
            "YAML does not allow tabs for indentation; use spaces"
        ],
    ),
    (
        "YAML unclosed flow list",
        "version: 1\nartifacts: [\n",
        [
            "3:1: expected the node content, but found '<stream end>' "
            "(while parsing a flow node on line 3)"
        ],
    ),
    (
        "duplicate YAML key",
        "version: 1\nartifacts:\n  - name: a\n    name: b\n    objects: [{file: x}]\n",
        ["4:5: $.artifacts[0].name: duplicate key 'name' (first on line 3; keep one)"],
    ),
    (
        "duplicate artifact names",
        "version: 1\nartifacts:\n  - name: a\n    objects: [{file: x}]\n"
        "  - name: a\n    objects: [{file: y}]\n",
        [
            "5:11: $.artifacts[1].name: duplicate artifact name 'a' "
            "(first on line 3; names must be unique)"
        ],
    ),
    (
        "two files on one key",
        HEAD + "      - file: x/data.csv\n      - file: y/data.csv\n",
        [
            "6:9: $.artifacts[0].objects[1]: object path 'data.csv' comes from both file "
            "'x/data.csv' (line 5) and file 'y/data.csv' (give one of them another obj_path, "
            "or exclude it)"
        ],
    ),
    (
        "file and reference on one key",
        HEAD + "      - file: data/raw.tgz\n      - reference: https://e.org/raw.tgz\n",
        [
            "6:9: $.artifacts[0].objects[1]: object path 'raw.tgz' comes from both file "
            "'data/raw.tgz' (line 5) and reference 'https://e.org/raw.tgz' (give one of them "
            "another obj_path, or exclude it)"
        ],
    ),
    (
        "absolute path",
        HEAD + "      - file: /etc/passwd\n",
        [f"5:15: $.artifacts[0].objects[0].file: '/etc/passwd' is absolute ({RELATIVE})"],
    ),
    (
        "'..' escape",
        HEAD + "      - dir: data/../../secrets\n",
        [
            "5:14: $.artifacts[0].objects[0].dir: 'data/../../secrets' leaves the manifest's "
            f"directory ({RELATIVE})"
        ],
    ),
    (
        "'..' in a glob",
        HEAD + "      - glob: '../**/*.csv'\n",
        [
            "5:15: $.artifacts[0].objects[0].glob: '../**/*.csv' leaves the manifest's "
            f"directory ({RELATIVE})"
        ],
    ),
    (
        "absolute base",
        HEAD + "      - glob: 'data/*.csv'\n        base: /data\n",
        [f"6:15: $.artifacts[0].objects[0].base: '/data' is absolute ({RELATIVE})"],
    ),
    (
        "obj_path with '..'",
        HEAD + "      - file: x.csv\n        obj_path: ../x.csv\n",
        [
            "6:19: $.artifacts[0].objects[0].obj_path: object path for 'x.csv' '../x.csv' "
            "has an empty, '.' or '..' segment: object paths must stay inside the artifact"
        ],
    ),
    (
        "obj_path on a reserved name",
        HEAD + "      - file: meta.yaml\n        obj_path: metadata.yaml\n",
        [
            "6:19: $.artifacts[0].objects[0].obj_path: object path for 'meta.yaml' "
            "'metadata.yaml' is reserved for the artifact's own metadata"
        ],
    ),
    (
        "glob obj_path with '..'",
        HEAD + "      - glob: '*.csv'\n        obj_path: a/../b/\n",
        [
            "6:19: $.artifacts[0].objects[0].obj_path: obj_path 'a/../b/' 'a/../b' has an "
            "empty, '.' or '..' segment: object paths must stay inside the artifact"
        ],
    ),
    (
        "glob starting with '!'",
        HEAD + "      - glob: '!*.tmp'\n",
        [
            "5:15: $.artifacts[0].objects[0].glob: pattern '!*.tmp' starts with '!' "
            "(put negations under exclude:)"
        ],
    ),
    (
        "glob that is a comment",
        HEAD + "      - glob: '#data'\n",
        [
            "5:15: $.artifacts[0].objects[0].glob: pattern '#data' matches nothing "
            "(it is blank or a '#' comment)"
        ],
    ),
    (
        "invalid exclude pattern",
        HEAD + "      - glob: '*.csv'\n        exclude: ['ok', '\\']\n",
        [
            "6:25: $.artifacts[0].objects[0].exclude[1]: invalid pattern '\\\\': "
            "Invalid git pattern: '\\\\'"
        ],
    ),
    (
        "key that is not a string",
        "version: 1\n1: x\nartifacts: [{name: a, objects: [{file: x}]}]\n",
        ["2:1: $: key 1 is not a string (quote it)"],
    ),
    (
        "merge key",
        "version: 1\nbase: &b {name: a}\nartifacts:\n  - <<: *b\n    objects: [{file: x}]\n",
        [
            "2:1: $.base: unknown key 'base' (allowed: version, vars, allow_env, remote, "
            "defaults, artifacts, moved)",
            "4:5: $.artifacts[0]: merge keys (<<) are not supported: write the keys out",
            "4:5: $.artifacts[0]: missing required key 'name'",
        ],
    ),
    (
        "api_key under remote",
        "version: 1\nremote:\n  url: http://h\n  api_key: s3cr3t\n"
        "artifacts:\n  - name: a\n    objects: [{file: x}]\n",
        [f"4:3: $.remote.api_key: {KEYS_HINT}"],
    ),
    (
        "Token under remote",
        "version: 1\nremote: {url: http://h, Token: abc}\nartifacts:\n  - name: a\n"
        "    objects: [{file: x}]\n",
        [f"2:25: $.remote.Token: {KEYS_HINT}"],
    ),
    (
        "unknown key under remote",
        "version: 1\nremote: {url: http://h, host: x}\nartifacts:\n  - name: a\n"
        "    objects: [{file: x}]\n",
        ["2:25: $.remote.host: unknown key 'host' (allowed: url)"],
    ),
    (
        "version 2",
        "version: 2\nartifacts:\n  - name: a\n    objects: [{file: x}]\n",
        ["1:1: $.version: version must be 1 (the only manifest format this tool reads)"],
    ),
    (
        "missing version",
        "artifacts:\n  - name: a\n    objects: [{file: x}]\n",
        ["1:1: $: missing required key 'version'"],
    ),
    (
        "bad alternative_name",
        "version: 1\nartifacts:\n  - name: a\n    alternative_name: a_2024\n"
        "    objects: [{file: x}]\n",
        [
            "4:5: $.artifacts[0].alternative_name: invalid alternative_name 'a_2024': "
            "expected NAME_YYMMDD_HHMMSS_xxxxxx, the last part 6 of a-z 0-9"
        ],
    ),
    (
        "var that is not a string",
        "version: 1\nvars: {epochs: 10}\nartifacts:\n  - name: a\n    objects: [{file: x}]\n",
        ["2:8: $.vars.epochs: expected a string, got a number (10)"],
    ),
    (
        "a date where a string belongs",
        "version: 1\nartifacts:\n  - name: a\n    description: 2024-01-31\n"
        "    objects: [{file: x}]\n",
        [
            "4:5: $.artifacts[0].description: expected a string, "
            "got a date (quote it to make it a string)"
        ],
    ),
    ("empty manifest", "", ["1:1: $: expected a mapping, got nothing"]),
    (
        "multiple problems in one run",
        "version: 1\nextra: true\nartifacts:\n  - name: 'bad name'\n"
        "    conflict_strategy: nope\n    objects:\n      - file: x\n        dir: y\n"
        "  - name: b\n    description: '{{ vars.missing }}'\n    objects: [{glob: '*.z'}]\n",
        [
            "2:1: $.extra: unknown key 'extra' (allowed: version, vars, allow_env, remote, "
            "defaults, artifacts, moved)",
            f"4:5: $.artifacts[0].name: invalid name 'bad name': {NAME_RULE}",
            "5:5: $.artifacts[0].conflict_strategy: invalid conflict_strategy 'nope' "
            "(choose skip, error, new, replace)",
            "7:9: $.artifacts[0].objects[0]: an object needs exactly one of file, dir, glob, "
            "reference (it has file and dir)",
            "10:18: $.artifacts[1].description: undefined variable 'missing' "
            "(define it under vars: or pass --var missing=...)",
        ],
    ),
    (
        "multiple semantic problems in one run",
        HEAD + "      - file: /abs\n      - dir: ../up\n      - file: a/x\n      - file: b/x\n",
        [
            f"5:15: $.artifacts[0].objects[0].file: '/abs' is absolute ({RELATIVE})",
            f"6:14: $.artifacts[0].objects[1].dir: '../up' leaves the manifest's directory "
            f"({RELATIVE})",
            "8:9: $.artifacts[0].objects[3]: object path 'x' comes from both file 'a/x' "
            "(line 7) and file 'b/x' (give one of them another obj_path, or exclude it)",
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "artifacts.yaml").write_text(text)
    problems = problems_of(Path("artifacts.yaml"), env={})
    assert problems == [f"artifacts.yaml:{line}" for line in expected]


def test_there_are_at_least_thirty_bad_manifests() -> None:
    assert len(BAD) >= 30


def test_missing_manifest_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert problems_of(Path("artifacts.yaml")) == [
        "artifacts.yaml: cannot read manifest: No such file or directory "
        "(create it or pass -f FILE)"
    ]


def test_manifest_that_is_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    assert problems_of(Path("sub")) == [
        "sub: cannot read manifest: Is a directory (create it or pass -f FILE)"
    ]


def test_the_path_is_shown_as_given(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 2\nartifacts: [{name: a, objects: [{file: x}]}]\n")
    assert problems_of(path) == [
        f"{path}:1:1: $.version: version must be 1 (the only manifest format this tool reads)"
    ]


# --- good manifests --------------------------------------------------------------------

DESIGN_EXAMPLE = """\
version: 1
vars: {run: "{{ env.CI_PIPELINE_ID | default('local') }}"}
remote: {url: "http://127.0.0.1:8080"}
defaults: {folder: default, make_folder: false, conflict_strategy: new}
artifacts:
  - name: mnist-dataset
    description: "MNIST, build {{ vars.run }}"
    labels: [dataset, mnist]
    folder: datasets/mnist
    make_folder: true
    conflict_strategy: replace
    objects:
      - file: data/train.csv
        obj_path: train/
      - dir: data/images
        obj_path: images/
      - glob: "data/**/*.json"
        exclude: ["**/tmp/**"]
        base: data
        obj_path: meta/
        if_no_files_found: error
      - reference: https://example.org/mnist.tar.gz
        obj_path: raw/
"""


def test_design_example_loads(tmp_path: Path) -> None:
    path = write(tmp_path, DESIGN_EXAMPLE)
    manifest = load_manifest(path, env={})
    assert manifest.path == path.resolve()
    assert manifest.path.is_absolute()
    assert manifest.remote_url == "http://127.0.0.1:8080"
    assert manifest.vars == {"run": "local"}
    (artifact,) = manifest.artifacts
    assert artifact == ArtifactSpec(
        name="mnist-dataset",
        folder="datasets/mnist",
        make_folder=True,
        conflict_strategy="replace",
        description="MNIST, build local",
        labels=("dataset", "mnist"),
        objects=(
            ObjectSpec("file", "data/train.csv", obj_path="train/", line=13),
            ObjectSpec("dir", "data/images", obj_path="images/", line=15),
            ObjectSpec(
                "glob",
                "data/**/*.json",
                obj_path="meta/",
                exclude=("**/tmp/**",),
                base="data",
                line=17,
            ),
            ObjectSpec("reference", "https://example.org/mnist.tar.gz", obj_path="raw/", line=22),
        ),
        line=6,
    )


def test_env_is_in_scope(tmp_path: Path) -> None:
    path = write(tmp_path, DESIGN_EXAMPLE)
    manifest = load_manifest(path, env={"CI_PIPELINE_ID": "4711"})
    assert manifest.vars == {"run": "4711"}
    assert manifest.artifacts[0].description == "MNIST, build 4711"


def test_os_environ_is_the_default_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_PIPELINE_ID", "99")
    manifest = load_manifest(write(tmp_path, DESIGN_EXAMPLE))
    assert manifest.artifacts[0].description == "MNIST, build 99"


def test_var_override_wins_and_is_not_rendered(tmp_path: Path) -> None:
    path = write(tmp_path, DESIGN_EXAMPLE)
    manifest = load_manifest(path, overrides={"run": "{{ 7 }}"}, env={"CI_PIPELINE_ID": "1"})
    assert manifest.vars == {"run": "{{ 7 }}"}
    assert manifest.artifacts[0].description == "MNIST, build {{ 7 }}"


def test_vars_render_in_order_and_see_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        vars:
          base: "{{ vars.root }}/out"
          model: "{{ vars.base }}/{{ env.USER_NAME }}"
          root: ignored
          extra: ignored too
        artifacts:
          - name: a
            description: "{{ vars.model }} {{ vars.extra }}"
            objects: [{file: "{{ vars.root }}/x"}]
        """,
    )
    manifest = load_manifest(path, overrides={"root": "r", "extra": "e"}, env={"USER_NAME": "u"})
    assert manifest.vars == {"base": "r/out", "model": "r/out/u", "root": "r", "extra": "e"}
    assert list(manifest.vars) == ["base", "model", "root", "extra"]
    assert manifest.artifacts[0].description == "r/out/u e"
    assert manifest.artifacts[0].objects[0].source == "r/x"


def test_a_var_cannot_use_a_later_var(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nvars: {a: '{{ vars.b }}', b: x}\nartifacts: []\n")
    assert problems_of(path, env={})[0].endswith(
        "2:11: $.vars.a: undefined variable 'b' (define it under vars: or pass --var b=...)"
    )


def test_defaults_apply_and_artifacts_override_them(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        defaults: {folder: shared, make_folder: true, conflict_strategy: skip,
                   symlinks: skip, hidden: exclude}
        artifacts:
          - name: a
            objects: [{dir: d}, {glob: '*.csv', symlinks: error, hidden: include}]
          - name: b
            folder: own
            conflict_strategy: error
            make_folder: false
            objects: [{file: x}]
        """,
    )
    a, b = load_manifest(path).artifacts
    assert (a.folder, a.make_folder, a.conflict_strategy) == ("shared", True, "skip")
    assert (b.folder, b.make_folder, b.conflict_strategy) == ("own", False, "error")
    assert (a.objects[0].symlinks, a.objects[0].hidden) == ("skip", "exclude")
    assert (a.objects[1].symlinks, a.objects[1].hidden) == ("error", "include")


def test_builtin_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nartifacts: [{name: a, objects: [{glob: '*.csv'}]}]\n")
    manifest = load_manifest(path)
    (artifact,) = manifest.artifacts
    assert (artifact.folder, artifact.make_folder, artifact.conflict_strategy) == (
        "default",
        False,
        "new",
    )
    assert artifact.objects[0] == ObjectSpec("glob", "*.csv", line=2)
    assert manifest.remote_url is None


def test_pinned_alternative_name(tmp_path: Path) -> None:
    alt = "mnist_240131_120000_ab12cd"
    text = (
        "version: 1\nartifacts:\n  - {name: mnist, alternative_name: ALT, objects: [{file: x}]}\n"
    )
    path = write(tmp_path, text.replace("ALT", alt).replace("[x]", "[{file: x}]"))
    assert load_manifest(path).artifacts[0].alternative_name == alt


def test_one_file_under_distinct_keys_is_fine(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEAD + "      - file: x/data.csv\n      - file: x/data.csv\n        obj_path: copy/\n",
    )
    objects = load_manifest(path).artifacts[0].objects
    assert [o.obj_path for o in objects] == [None, "copy/"]


def test_anchors_and_aliases_work(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        artifacts:
          - name: a
            labels: &labels [x, y]
            objects: [{file: f}]
          - name: b
            labels: *labels
            objects: [{file: f}]
        """,
    )
    assert [a.labels for a in load_manifest(path).artifacts] == [("x", "y"), ("x", "y")]


# --- the schema ------------------------------------------------------------------------


def test_schema_is_valid_and_shipped() -> None:
    schema = json.loads(schema_text())
    Draft202012Validator.check_schema(schema)
    assert SCHEMA_PATH.name == "manifest.schema.json"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def _properties(node: object) -> list[tuple[str, dict[str, object]]]:
    found: list[tuple[str, dict[str, object]]] = []
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            found.append((name, sub))
        for value in node.values():
            found.extend(_properties(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_properties(value))
    return found


def test_every_property_is_described() -> None:
    schema = json.loads(schema_text())
    definitions = schema["$defs"]
    for name, sub in _properties(schema):
        target = sub
        if "$ref" in sub:
            target = definitions[str(sub["$ref"]).rsplit("/", 1)[1]]
        assert "description" in target, name


def test_every_object_is_closed() -> None:
    schema = json.loads(schema_text())

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)


def test_policy_defaults_are_documented() -> None:
    defs = json.loads(schema_text())["$defs"]
    assert defs["symlinks"]["default"] == "follow"
    assert defs["hidden"]["default"] == "include"
    assert defs["conflict_strategy"]["default"] == "new"
    assert defs["object"]["properties"]["if_no_files_found"]["default"] == "error"


def test_libyaml_and_the_python_loader_read_a_manifest_alike() -> None:
    """The fast path (libyaml) gives the same values and positions as PyYAML's own
    loader, and a broken document keeps the Python loader's message."""
    from manifest_tool import yamlpos

    text = (
        "version: 1\nartifacts:\n  - name: a\n    labels: [x, 'y']\n"
        "    objects:\n      - file: 'w.bin'\n      - {uri: 's3://b/k', path: k}\n"
    )
    fast = yamlpos.parse(text)
    slow = yamlpos._parse(text, yaml.SafeLoader)
    assert yamlpos.fast_loader() is not None  # the wheels ship libyaml
    assert (fast.data, fast.values, fast.keys) == (slow.data, slow.values, slow.keys)
    with pytest.raises(yamlpos.YamlSyntaxError) as err:
        yamlpos.parse("a: 1\n b: 2\n")
    assert "check the indentation" in str(err.value)
