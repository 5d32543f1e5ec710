"""jsonschema's validation errors, rephrased for the person who wrote the manifest.

The schema carries its own wording where a generic one would be vague:
``errorMessage`` (for a whole subschema) and ``patternErrorMessage``, the keywords
VS Code's YAML and JSON support also show in the editor.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, get_args

from jsonschema import ValidationError

from .model import ObjectKind
from .yamlpos import JsonPath

KINDS: tuple[str, ...] = get_args(ObjectKind)
_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "boolean": "true or false",
    "integer": "an integer",
    "number": "a number",
    "null": "nothing",
}
_EMPTY_LIST = {
    "artifacts": "declare at least one artifact",
    "objects": "list at least one file, dir, glob or reference",
}
_REQUIRED = re.compile(r"^'(?P<key>.*)' is a required property$")


def schema_messages(error: ValidationError) -> Iterator[tuple[JsonPath, str]]:
    """(where, message) for one jsonschema error, phrased for a person."""
    at: JsonPath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    field = _field_name(at)
    if "errorMessage" in schema:
        schema_path = list(error.schema_path)
        if "dependentSchemas" in schema_path:
            at = (*at, schema_path[schema_path.index("dependentSchemas") + 1])
        yield at, schema["errorMessage"]
    elif error.validator == "additionalProperties":
        allowed = ", ".join(schema.get("properties", {}))
        for key in _unknown_keys(error.instance, schema):
            yield (*at, key), f"unknown key '{key}' (allowed: {allowed})"
    elif error.validator == "required":
        match = _REQUIRED.match(error.message)
        yield at, f"missing required key '{match['key'] if match else error.message}'"
    elif error.validator == "oneOf" and isinstance(error.instance, dict):
        found = [kind for kind in KINDS if kind in error.instance]
        has = " and ".join(found) if found else "none"
        yield at, f"an object needs exactly one of file, dir, glob, reference (it has {has})"
    elif error.validator == "oneOf":
        return  # not a mapping: the type error says so
    else:
        yield at, _simple_message(error, schema, field)


def _simple_message(error: ValidationError, schema: dict[str, Any], field: str) -> str:
    value = error.instance
    if error.validator == "type":
        expected = _TYPE_NAMES.get(str(error.validator_value), "a value")
        return f"expected {expected}, got {_kind_of(value)}"
    if error.validator == "enum":
        return f"invalid {field} {value!r} (choose {', '.join(map(str, schema['enum']))})"
    if error.validator == "pattern" and "patternErrorMessage" in schema:
        return f"invalid {field} {value!r}: {schema['patternErrorMessage']}"
    if error.validator == "minItems":
        return f"{field} is empty ({_EMPTY_LIST.get(field, 'give at least one item')})"
    return error.message


def _unknown_keys(instance: object, schema: dict[str, Any]) -> list[str]:
    if not isinstance(instance, dict):
        return []
    known = schema.get("properties", {})
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    return [k for k in instance if k not in known and not any(p.search(k) for p in patterns)]


def _field_name(at: JsonPath) -> str:
    names = [part for part in at if isinstance(part, str)]
    return names[-1] if names else "manifest"


def _kind_of(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__} (quote it to make it a string)"
