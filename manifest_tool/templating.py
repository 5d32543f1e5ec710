"""The one Jinja2 environment: sandboxed, strict about undefined names, no escaping.

Manifest strings are rendered with two names in scope, ``env`` (the environment)
and ``vars`` (the manifest's variables). Errors come back as InvalidInput whose
message says which name is missing and how to provide it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING

from .errors import InvalidInput

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment


class TemplateEnv(dict[str, str]):
    """``env`` in templates; its own type so an undefined-name error can tell it apart."""


class TemplateVars(dict[str, str]):
    """``vars`` in templates."""


_MISSING_ATTR = re.compile(r"^'(?P<owner>[\w.]+) object' has no attribute '(?P<name>.*)'$")
_MISSING_NAME = re.compile(r"^'(?P<name>.*)' is undefined$")


@lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    """The shared environment (building one compiles its lexer, so build it once).

    Jinja2 is imported here, not at the top: a manifest without templates never
    pays for it."""
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
    )


def render(text: str, env: Mapping[str, str], vars: Mapping[str, str]) -> str:
    """``text`` rendered with ``env`` and ``vars``; InvalidInput on any template error."""
    if "{" not in text:  # no delimiter: skip the compile, most values are plain
        return text
    import jinja2

    try:
        template = environment().from_string(text)
        return template.render(env=TemplateEnv(env), vars=TemplateVars(vars))
    except jinja2.UndefinedError as err:
        raise InvalidInput(_undefined_message(err.message or "")) from None
    except jinja2.TemplateSyntaxError as err:
        raise InvalidInput(f"template syntax error: {err.message}") from None
    except jinja2.TemplateError as err:
        raise InvalidInput(f"template error: {err.message}") from None


def _undefined_message(raw: str) -> str:
    attr = _MISSING_ATTR.match(raw)
    if attr and attr["owner"].endswith(TemplateEnv.__name__):
        name = attr["name"]
        return (
            f"undefined environment variable '{name}' "
            f"(set it, or write {{{{ env.{name} | default('...') }}}})"
        )
    if attr and attr["owner"].endswith(TemplateVars.__name__):
        name = attr["name"]
        return f"undefined variable '{name}' (define it under vars: or pass --var {name}=...)"
    name_match = _MISSING_NAME.match(raw)
    if name_match:
        name = name_match["name"]
        return (
            f"undefined name '{name}' (only env and vars are in scope: write {{{{ vars.{name} }}}})"
        )
    return f"undefined value: {raw}"
