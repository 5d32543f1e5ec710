"""YAML parsed into plain data plus where every key and value sits in the file.

PyYAML's ``construct`` loses positions and silently keeps the last of duplicate
keys, so the node tree is walked here instead: scalars are still constructed by
SafeLoader (same types as ``yaml.safe_load``), mappings and sequences by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:  # imported where used: a plan that finds its parse cached never needs it
    import yaml

JsonPath = tuple[str | int, ...]
Pos = tuple[int, int]  # 1-based line and column

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
# A manifest may come from anyone: aliases can expand a small file exponentially (a
# "billion laughs") and deep nesting exhausts the parser's recursion. Real manifests
# stay far below both.
MAX_DEPTH = 64
MAX_VALUES = 200_000  # mappings, sequences and scalars built, aliases counted each time


class YamlSyntaxError(Exception):
    """The text is not YAML; ``pos`` is where the parser gave up."""

    def __init__(self, pos: Pos, message: str) -> None:
        self.pos = pos
        self.message = message
        super().__init__(f"{pos[0]}:{pos[1]}: {message}")


@dataclass
class Document:
    """A parsed document: ``data`` and the positions of its values and keys."""

    data: object = None
    values: dict[JsonPath, Pos] = field(default_factory=dict)
    keys: dict[JsonPath, Pos] = field(default_factory=dict)
    problems: list[tuple[Pos, JsonPath, str]] = field(default_factory=list)
    built: int = 0

    def value_pos(self, path: JsonPath) -> Pos:
        """Where the value at ``path`` (or its nearest existing parent) starts."""
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, (1, 1))

    def key_pos(self, path: JsonPath) -> Pos:
        """Where the key naming ``path`` starts, else where its value does."""
        return self.keys.get(path) or self.value_pos(path)


def parse(text: str) -> Document:
    """The document in ``text``; YamlSyntaxError if it is not YAML.

    libyaml composes a 1,000-artifact manifest 10x faster than PyYAML's Python
    scanner; a document it refuses is read again by the Python loader, whose error
    texts (and hints) are the ones users see and the tests pin.
    """
    import yaml

    fast = fast_loader()
    if fast is not None:
        try:
            return _parse(text, fast)
        except YamlSyntaxError:
            pass
    return _parse(text, yaml.SafeLoader)


def fast_loader() -> Any:
    """libyaml's loader when PyYAML was built with it (the wheels are), else None."""
    import yaml

    return getattr(yaml, "CSafeLoader", None)


def _parse(text: str, loader_class: Any) -> Document:
    import yaml

    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        doc = Document()
        if node is not None:
            doc.data = _build(loader, node, (), doc)
        return doc
    except yaml.MarkedYAMLError as err:
        raise YamlSyntaxError(_pos(err.problem_mark), _syntax_message(err)) from None
    except yaml.YAMLError as err:
        raise YamlSyntaxError((1, 1), str(err)) from None
    except RecursionError:  # PyYAML composes nested collections recursively
        message = f"nesting too deep (at most {MAX_DEPTH} levels: flatten the document)"
        mark = loader.get_mark() if hasattr(loader, "get_mark") else None
        raise YamlSyntaxError(_pos(mark), message) from None
    finally:
        loader.dispose()


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` through libyaml where available (a 1,000-entry lock: 0.9 s
    with the Python scanner, 0.08 s with libyaml); YamlSyntaxError if it is not YAML."""
    import yaml

    try:
        return yaml.load(text, Loader=fast_loader() or yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        raise YamlSyntaxError(_pos(err.problem_mark), _syntax_message(err)) from None
    except yaml.YAMLError as err:
        raise YamlSyntaxError((1, 1), str(err)) from None


def format_path(path: JsonPath) -> str:
    """``$.artifacts[0].objects[1].file`` style."""
    out = ["$"]
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENTIFIER.match(part):
            out.append(f".{part}")
        else:
            out.append(f"[{part!r}]")
    return "".join(out)


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: JsonPath, doc: Document) -> object:
    _check_limits(node, path, doc)
    doc.values[path] = _pos(node.start_mark)
    kind = getattr(node, "id", "")  # "scalar", "sequence" or "mapping"
    if kind == "mapping":
        return _build_mapping(loader, cast("yaml.MappingNode", node), path, doc)
    if kind == "sequence":
        return [_build(loader, item, (*path, i), doc) for i, item in enumerate(node.value)]
    return _scalar(loader, node)


def _scalar(loader: yaml.SafeLoader, node: yaml.Node) -> object:
    """A scalar; a number no manifest needs (thousands of digits) is an error, not a
    ValueError from deep inside the loader or, later, from JSON."""
    try:
        value = loader.construct_object(node, deep=True)
    except ValueError as err:
        raise YamlSyntaxError(_pos(node.start_mark), f"unreadable value: {err}") from None
    if isinstance(value, int) and value.bit_length() > 64:
        raise YamlSyntaxError(_pos(node.start_mark), "number too large (quote it as a string)")
    return value


def _build_mapping(
    loader: yaml.SafeLoader, node: yaml.MappingNode, path: JsonPath, doc: Document
) -> dict[str, object]:
    out: dict[str, object] = {}
    for key_node, value_node in node.value:
        pos = _pos(key_node.start_mark)
        if key_node.tag == "tag:yaml.org,2002:merge":
            doc.problems.append(
                (pos, path, "merge keys (<<) are not supported: write the keys out")
            )
            continue
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            doc.problems.append((pos, path, f"key {key!r} is not a string (quote it)"))
            continue
        if key in out:
            first = doc.keys[(*path, key)]
            message = f"duplicate key '{key}' (first on line {first[0]}; keep one)"
            doc.problems.append((pos, (*path, key), message))
            continue
        doc.keys[(*path, key)] = pos
        out[key] = _build(loader, value_node, (*path, key), doc)
    return out


def _check_limits(node: yaml.Node, path: JsonPath, doc: Document) -> None:
    doc.built += 1
    if len(path) > MAX_DEPTH:
        message = f"nesting too deep (at most {MAX_DEPTH} levels: flatten the document)"
        raise YamlSyntaxError(_pos(node.start_mark), message)
    if doc.built > MAX_VALUES:
        message = (
            f"the document expands to more than {MAX_VALUES:,} values "
            "(aliases that repeat each other? write the values out)"
        )
        raise YamlSyntaxError(_pos(node.start_mark), message)


def _pos(mark: yaml.Mark | None) -> Pos:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _syntax_message(err: yaml.MarkedYAMLError) -> str:
    message = err.problem or "invalid YAML"
    if err.context and err.context_mark is not None:
        message += f" ({err.context} on line {err.context_mark.line + 1})"
    return message + _hint(message)


def _hint(message: str) -> str:
    """PyYAML's wording hides the usual causes: a tab, or a line indented off the grid."""
    if "'\\t'" in message or "\t" in message:
        return ": YAML does not allow tabs for indentation; use spaces"
    if any(s in message for s in ("expected <block end>", "mapping values are not allowed")):
        return ": check the indentation (keys of one mapping line up in one column)"
    return ""
