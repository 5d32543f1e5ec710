"""The one Jinja2 environment: sandboxed, strict about undefined names, no escaping.

Manifest strings are rendered with two names in scope, ``env`` (the environment,
without the variables that look like secrets unless the manifest allows them) and
``vars`` (the manifest's variables). A manifest may come from anyone, so rendering
is bounded (see ``limits``). Errors come back as InvalidInput whose message says
which name is missing or which limit was hit, and how to fix it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from .errors import InvalidInput
from .template_limits import LimitExceeded, bounded_environment, bounded_render

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

# Names a template must not read unless allowed: publishing one would leak it.
_SECRET_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|(?:^|_)(?:PASS|PWD|PAT|JWT|AUTH|DSN)(?:_|$)",
    re.IGNORECASE,
)
API_KEY_VARIABLES = frozenset({"MANIFEST_TOOL_API_KEY", "T9K_APIKEY", "T9K_API_KEY"})


class TemplateEnv(dict[str, str]):
    """``env`` in templates; its own type so an undefined-name error can tell it apart."""


@dataclass(frozen=True)
class EnvScope:
    """The environment as templates see it: ``values`` they may read, and the names
    ``hidden`` from them (kept so that reading one says why)."""

    values: Mapping[str, str]
    hidden: frozenset[str]


def visible_env(environ: Mapping[str, str], allow: Iterable[str] = ()) -> EnvScope:
    """The variables templates may read: not the secret-looking ones, unless allowed."""
    allowed = set(allow)
    hidden = frozenset(
        name
        for name in environ
        if name not in allowed and (name in API_KEY_VARIABLES or _SECRET_NAME.search(name))
    )
    return EnvScope({k: v for k, v in environ.items() if k not in hidden}, hidden)


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

    return bounded_environment(
        SandboxedEnvironment,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        # no constant folding: it would run filters while compiling, outside the limits
        optimized=False,
        keep_trailing_newline=True,
    )


def render(text: str, env: EnvScope, vars: Mapping[str, str]) -> str:
    """``text`` rendered with ``env`` and ``vars``; InvalidInput on any template error."""
    if "{" not in text:  # no delimiter: skip the compile, most values are plain
        return text
    import jinja2

    try:
        return bounded_render(
            lambda: environment().from_string(text),
            env=TemplateEnv(env.values),
            vars=TemplateVars(vars),
        )
    except LimitExceeded as err:
        raise InvalidInput(f"template stopped: {err}") from None
    except jinja2.UndefinedError as err:
        raise InvalidInput(_undefined_message(err.message or "", env.hidden)) from None
    except jinja2.TemplateSyntaxError as err:
        raise InvalidInput(f"template syntax error: {err.message}") from None
    except jinja2.TemplateError as err:
        raise InvalidInput(f"template error: {err.message}") from None
    except Exception as err:  # a template is hostile code: 1/0, "%d"|format("a"), ...
        reason = " ".join(str(err).split())[:200]
        raise InvalidInput(f"template error: {type(err).__name__}: {reason}") from None


def _undefined_message(raw: str, hidden: frozenset[str]) -> str:
    attr = _MISSING_ATTR.match(raw)
    if attr and attr["owner"].endswith(TemplateEnv.__name__) and attr["name"] in hidden:
        name = attr["name"]
        return (
            f"environment variable '{name}' looks like a secret and is hidden from templates "
            f"(to publish it anyway, list it under allow_env: [{name}] in the manifest)"
        )
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
