"""Load a manifest: read, parse with positions, render templates, validate, freeze.

Every problem found is collected and reported at once, each as
``FILE:LINE:COL: $.json.path: message``; nothing is half-loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Mapping
from contextlib import suppress
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from .cache import parsed, read_cache_text
from .errors import InvalidInput, ManifestInvalid
from .localdir import write_atomic
from .model import ArtifactSpec, Manifest, ObjectKind, ObjectSpec
from .paths import key_clash, resolve_obj_path
from .sources import check_exclude, check_glob, glob_folder
from .templating import EnvScope, render, visible_env
from .versions import alias_problem
from .yamlpos import Document, JsonPath, Pos, YamlSyntaxError, format_path, parse

SCHEMA_PATH = Path(__file__).parent / "schemas" / "manifest.schema.json"
if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

KINDS: tuple[ObjectKind, ...] = get_args(ObjectKind)
_LOCAL_PATH_FIELDS = ("file", "dir", "glob", "base")


def schema_text() -> str:
    """The manifest's JSON Schema, as shipped."""
    return SCHEMA_PATH.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator  # 0.15 s: only when not known valid

    return Draft202012Validator(json.loads(schema_text()))


def _known_valid_file(path: Path) -> Path:
    """Per manifest: two manifests in one directory would otherwise take turns
    overwriting it, and each plan would validate (and import jsonschema) again."""
    return path.parent / ".em" / "cache" / "valid" / path.name


def _fingerprint(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, default=repr) + schema_text()
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _schema_problems(path: Path, data: Any, problems: _Problems, failed: set[JsonPath]) -> None:
    """Validate against the schema, unless this exact rendered document (and schema)
    passed last time: a no-op plan then never imports jsonschema."""
    marker = _known_valid_file(path)
    fingerprint = _fingerprint(data)
    try:
        if read_cache_text(marker) == fingerprint:
            return
    except (OSError, ValueError):  # absent or damaged: validate
        pass
    from .schema_messages import schema_messages

    clean = True
    for error in _validator().iter_errors(data):
        clean = False
        at = tuple(error.absolute_path)
        if not any(at[: len(bad)] == bad for bad in failed):
            for where, message in schema_messages(error):
                problems.at_key(where, message)
    if clean and not failed and marker.parent.parent.is_dir():
        with suppress(OSError):  # only a cache
            write_atomic(marker, fingerprint.encode())


class _Problems:
    """Problems found so far, each with its position, reported sorted by line."""

    def __init__(self, shown: str, doc: Document) -> None:
        self.shown = shown
        self.doc = doc
        self.items: set[tuple[Pos, str]] = set()

    def add(self, pos: Pos, path: JsonPath, message: str) -> None:
        self.items.add((pos, f"{format_path(path)}: {message}"))

    def at_value(self, path: JsonPath, message: str) -> None:
        self.add(self.doc.value_pos(path), path, message)

    def at_key(self, path: JsonPath, message: str) -> None:
        self.add(self.doc.key_pos(path), path, message)

    def raise_if_any(self) -> None:
        if self.items:
            lines = [f"{self.shown}:{ln}:{col}: {msg}" for (ln, col), msg in sorted(self.items)]
            raise ManifestInvalid(lines)


def load_manifest(
    path: Path, overrides: Mapping[str, str] = {}, env: Mapping[str, str] | None = None
) -> Manifest:
    """The manifest at ``path``, rendered and validated; ManifestInvalid lists every problem."""
    shown = str(path)
    doc = _parse(shown, path, _read(path))
    problems = _Problems(shown, doc)
    for pos, at, message in doc.problems:
        problems.add(pos, at, message)
    failed: set[JsonPath] = set()
    data, final_vars = _render_document(doc.data, overrides, env, problems, failed)
    _schema_problems(Path(os.path.abspath(path)), data, problems, failed)
    problems.raise_if_any()
    _check_semantics(data, problems)
    problems.raise_if_any()
    return _freeze(Path(os.path.abspath(path)), data, final_vars, doc)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ManifestInvalid(
            [f"{path}: cannot read manifest: {reason} (create it or pass -f FILE)"]
        ) from None


def _parse(shown: str, path: Path, text: str) -> Document:
    try:
        fields = parsed(path, "manifest", text, _document_fields)
        return Document(*fields)
    except YamlSyntaxError as err:
        line, col = err.pos
        raise ManifestInvalid([f"{shown}:{line}:{col}: {err.message}"]) from None
    except (TypeError, ValueError):  # a damaged cache entry: parse again
        return parse(text)


def _document_fields(text: str) -> tuple[Any, ...]:
    doc = parse(text)
    return (doc.data, doc.values, doc.keys, doc.problems, doc.built)


# --- rendering -------------------------------------------------------------------------


def _render_document(
    data: object,
    overrides: Mapping[str, str],
    env: Mapping[str, str] | None,
    problems: _Problems,
    failed: set[JsonPath],
) -> tuple[object, dict[str, str]]:
    """``data`` with every string rendered, and the final variables."""
    if not isinstance(data, dict):
        return data, dict(overrides)
    environ = visible_env(os.environ if env is None else env, _allowed_env(data))
    final_vars = _render_vars(data.get("vars"), overrides, environ, problems, failed)
    out: dict[str, object] = {}
    for key, value in data.items():
        if key == "allow_env":
            out[key] = value  # names, not templates
        elif key == "vars" and isinstance(value, dict):
            out[key] = {name: final_vars.get(name, raw) for name, raw in value.items()}
        else:
            out[key] = _render_tree(value, (key,), environ, final_vars, problems, failed)
    return out, final_vars


def _allowed_env(data: dict[str, object]) -> list[str]:
    """The secret-looking variables the manifest lets templates read (checked by the
    schema; anything odd here allows nothing)."""
    names = data.get("allow_env")
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def _render_vars(
    raw: object,
    overrides: Mapping[str, str],
    environ: EnvScope,
    problems: _Problems,
    failed: set[JsonPath],
) -> dict[str, str]:
    """Variables in file order, each rendered with the ones before it; overrides win."""
    scope = dict(overrides)  # overrides are visible to every variable, before and after
    final: dict[str, str] = {}
    for name, value in raw.items() if isinstance(raw, dict) else ():
        if name in overrides:
            final[name] = overrides[name]
        elif isinstance(value, str):
            try:
                scope[name] = final[name] = render(value, environ, scope)
            except InvalidInput as err:
                problems.at_value(("vars", name), str(err))
                failed.add(("vars", name))
    declared = list(raw) if isinstance(raw, dict) else []
    for name, value in overrides.items():
        final.setdefault(name, value)
        if name not in declared:
            problems.at_key(("vars",), _undeclared(name, declared))
    return final


def _undeclared(name: str, declared: list[str]) -> str:
    """A typo in --var would otherwise publish with the default, silently."""
    known = f"declared: {', '.join(declared)}" if declared else "this manifest declares no vars"
    return f"--var {name}: not a variable of this manifest ({known})"


def _render_tree(
    value: object,
    path: JsonPath,
    environ: EnvScope,
    variables: dict[str, str],
    problems: _Problems,
    failed: set[JsonPath],
) -> object:
    if isinstance(value, str):
        try:
            return render(value, environ, variables)
        except InvalidInput as err:
            problems.at_value(path, str(err))
            failed.add(path)
            return value
    if isinstance(value, dict):
        return {
            k: _render_tree(v, (*path, k), environ, variables, problems, failed)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _render_tree(v, (*path, i), environ, variables, problems, failed)
            for i, v in enumerate(value)
        ]
    return value


# --- checks the schema cannot express --------------------------------------------------


def _check_semantics(data: Any, problems: _Problems) -> None:
    names: dict[str, int] = {}
    for i, artifact in enumerate(data["artifacts"]):
        name = artifact["name"]
        if name in names:
            first = problems.doc.value_pos(("artifacts", names[name], "name"))[0]
            problems.at_value(
                ("artifacts", i, "name"),
                f"duplicate artifact name '{name}' (first on line {first}; names must be unique)",
            )
        else:
            names[name] = i
        _check_objects(i, artifact["objects"], problems)
        _check_folder(artifact.get("folder"), ("artifacts", i, "folder"), problems)
        _check_versions(artifact, data.get("defaults", {}), ("artifacts", i), problems)
    _check_folder(data.get("defaults", {}).get("folder"), ("defaults", "folder"), problems)
    _check_moved(data.get("moved", ()), names, problems)
    _check_moved_versions(data, problems)


def _check_folder(folder: str | None, at: JsonPath, problems: _Problems) -> None:
    """'.' and '..' segments: the server refuses them, so say so before any upload."""
    if folder is None:
        return
    if any(part in (".", "..") for part in folder.split("/")):
        problems.at_value(
            at, f"folder '{folder}' has a '.' or '..' segment (write the folder it means)"
        )


def _check_versions(
    artifact: dict[str, Any], defaults: dict[str, Any], at: JsonPath, problems: _Problems
) -> None:
    """Aliases name versions, and only ``versions: keep`` makes more than one."""
    keep = artifact.get("versions", defaults.get("versions", "update")) == "keep"
    for k, alias in enumerate(artifact.get("aliases", ())):
        if message := alias_problem(alias):
            problems.at_value((*at, "aliases", k), message)
    for key in ("aliases", "keep_versions"):
        if key in artifact and not keep:
            problems.at_key((*at, key), f"{key} needs versions: keep (here or in defaults)")
    if keep and "alternative_name" in artifact:
        problems.at_key(
            (*at, "alternative_name"),
            "a pinned alternative_name names one node; versions: keep gives each version "
            "its own (remove one of them)",
        )


def _check_moved_versions(data: Any, problems: _Problems) -> None:
    """A rename moves one node; the older versions of a versioned artifact would stay
    behind under the old name, so renaming one is refused."""
    default = data.get("defaults", {}).get("versions", "update")
    keep = {a["name"] for a in data["artifacts"] if a.get("versions", default) == "keep"}
    for i, entry in enumerate(data.get("moved", ())):
        if entry["to"] in keep:
            problems.at_value(
                ("moved", i, "to"),
                f"'{entry['to']}' keeps versions: a rename would leave its older versions "
                "behind (publish under the new name instead, and remove this entry)",
            )


def _check_moved(moved: list[dict[str, str]], names: dict[str, int], problems: _Problems) -> None:
    """Each rename goes from a name no longer declared to one that is, once."""
    sources: set[str] = set()
    targets: set[str] = set()
    for i, entry in enumerate(moved):
        at: JsonPath = ("moved", i)
        if entry["to"] not in names:
            problems.at_value((*at, "to"), f"'{entry['to']}' is not an artifact of this manifest")
        if entry["from"] in names:
            problems.at_value(
                (*at, "from"), f"'{entry['from']}' is still declared: remove it or the move"
            )
        if entry["from"] in sources or entry["to"] in targets:
            problems.at_value(at, "each name may be moved from, and to, only once")
        sources.add(entry["from"])
        targets.add(entry["to"])


def _check_objects(i: int, objects: list[dict[str, Any]], problems: _Problems) -> None:
    claimed: dict[str, tuple[str, str, int]] = {}  # key -> kind, source, line
    for j, obj in enumerate(objects):
        at: JsonPath = ("artifacts", i, "objects", j)
        kind = next(k for k in KINDS if k in obj)
        for field in _LOCAL_PATH_FIELDS:
            if field in obj and (message := _local_path_problem(field, obj[field])):
                problems.at_value((*at, field), message)
        for k, pattern in enumerate(obj.get("exclude", ())):
            _report(problems, (*at, "exclude", k), check_exclude, pattern)
        key = _object_key(kind, obj, at, problems)
        if key is not None:
            _claim(claimed, key, kind, obj[kind], at, problems)


def _object_key(kind: str, obj: dict[str, Any], at: JsonPath, problems: _Problems) -> str | None:
    """The key a file or reference lands at (None for dir and glob, or when invalid)."""
    where = (*at, "obj_path") if "obj_path" in obj else (*at, kind)
    if kind == "glob":
        _report(problems, (*at, "glob"), check_glob, obj["glob"])
        _report(problems, where, glob_folder, obj.get("obj_path"))
        return None
    try:
        key = resolve_obj_path(obj[kind], obj.get("obj_path"))
    except InvalidInput as err:
        problems.at_value(where, str(err))
        return None
    return key if kind in ("file", "reference") else None


def _claim(
    claimed: dict[str, tuple[str, str, int]],
    key: str,
    kind: str,
    source: str,
    at: JsonPath,
    problems: _Problems,
) -> None:
    line = problems.doc.value_pos(at)[0]
    if key not in claimed:
        claimed[key] = (kind, source, line)
        return
    other_kind, other_source, other_line = claimed[key]
    first = f"{other_kind} {other_source!r} (line {other_line})"
    problems.at_value(at, key_clash(key, first, f"{kind} {source!r}"))


def _report(problems: _Problems, at: JsonPath, check: Any, value: Any) -> None:
    try:
        check(value)
    except InvalidInput as err:
        problems.at_value(at, str(err))


def _local_path_problem(field: str, value: str) -> str | None:
    hint = "paths are relative to the manifest's directory"
    if not value:
        return f"{field} is empty ({hint})"
    if value.startswith(("/", "\\")) or os.path.isabs(value):
        return f"'{value}' is absolute ({hint})"
    normal = posixpath.normpath(value.replace("\\", "/"))
    if normal == ".." or normal.startswith("../") or (field == "glob" and ".." in value.split("/")):
        return f"'{value}' leaves the manifest's directory ({hint})"
    return None


# --- the frozen result -----------------------------------------------------------------


def _freeze(path: Path, data: Any, final_vars: dict[str, str], doc: Document) -> Manifest:
    defaults = data.get("defaults", {})
    artifacts = tuple(
        _artifact(raw, defaults, ("artifacts", i), doc) for i, raw in enumerate(data["artifacts"])
    )
    remote_url = data.get("remote", {}).get("url")
    moved = {m["to"]: m["from"] for m in data.get("moved", ())}
    return Manifest(
        path=path, artifacts=artifacts, remote_url=remote_url, vars=final_vars, moved=moved
    )


def _artifact(
    raw: dict[str, Any], defaults: dict[str, Any], at: JsonPath, doc: Document
) -> ArtifactSpec:
    def pick(key: str, fallback: Any) -> Any:
        return raw.get(key, defaults.get(key, fallback))

    objects = tuple(
        _object(obj, defaults, (*at, "objects", j), doc) for j, obj in enumerate(raw["objects"])
    )
    return ArtifactSpec(
        name=raw["name"],
        folder=pick("folder", "default"),
        make_folder=pick("make_folder", False),
        conflict_strategy=pick("conflict_strategy", "new"),
        description=raw.get("description", ""),
        labels=tuple(raw.get("labels", ())),
        alternative_name=raw.get("alternative_name"),
        objects=objects,
        line=doc.value_pos(at)[0],
        versions=pick("versions", "update"),
        keep_versions=pick("keep_versions", None),
        aliases=tuple(raw.get("aliases", ())),
    )


def _object(
    raw: dict[str, Any], defaults: dict[str, Any], at: JsonPath, doc: Document
) -> ObjectSpec:
    kind: ObjectKind = next(k for k in KINDS if k in raw)
    return ObjectSpec(
        kind=kind,
        source=raw[kind],
        obj_path=raw.get("obj_path"),
        exclude=tuple(raw.get("exclude", ())),
        base=raw.get("base"),
        if_no_files_found=raw.get("if_no_files_found", "error"),
        symlinks=raw.get("symlinks", defaults.get("symlinks", "follow")),
        hidden=raw.get("hidden", defaults.get("hidden", "include")),
        line=doc.value_pos(at)[0],
    )
