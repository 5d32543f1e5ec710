"""Subcommands, one module each, imported only when invoked.

``COMMANDS`` maps a command name to ``(module, attribute)`` below this package; the
CLI's group imports a module the first time its command runs, so ``plan`` does not
pay for the server's or the watcher's imports.
"""

from __future__ import annotations

COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init_cmd", "init_command"),
    "validate": ("validate_cmd", "validate_command"),
    "plan": ("plan_cmd", "plan_command"),
    "apply": ("apply_cmd", "apply_command"),
    "watch": ("watch_cmd", "watch_command"),
    "ls": ("remote_cmds", "ls_command"),
    "pull": ("remote_cmds", "pull_command"),
    "lineage": ("lineage_cmd", "lineage_command"),
    "versions": ("versions_cmd", "versions_command"),
    "tag": ("versions_cmd", "tag_command"),
    "schema": ("validate_cmd", "schema_command"),
    "serve": ("serve", "serve"),
    "user": ("serve", "user"),
    "login": ("login_cmd", "login_command"),
    "logout": ("login_cmd", "logout_command"),
    "gc": ("gc_cmd", "gc_command"),
}
