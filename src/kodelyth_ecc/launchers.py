"""Launcher templates: the shell commands that start a worker's agent.

The harness adapters (``harnesses``) own the built-in templates; this module fills
in any template, built-in or the user's ``--launcher-cmd``.

A template is a shell command with ``{placeholder}`` fields. Each field exists
as ``{x}``/``{x_raw}`` (the raw value) and ``{x_sh}`` (single-quoted for the
shell). Built-in templates only use ``_sh`` fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from kodelyth_ecc.errors import UsageError
from kodelyth_ecc.process import which

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kodelyth_ecc.harnesses import Harness

PLACEHOLDERS = (
    "worker_name",
    "worker_slug",
    "session_name",
    "repo_root",
    "worktree_path",
    "branch_name",
    "task_file",
    "handoff_file",
    "status_file",
)
_KNOWN = frozenset(name + suffix for name in PLACEHOLDERS for suffix in ("", "_raw", "_sh"))
# `${var}` is shell syntax, not a placeholder; `{{` and `}}` are literal braces
# (for `awk '{{print $1}}'`).
_FIELD = re.compile(r"\{\{|\}\}|(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")


def missing_program(harness: Harness, path: str | None = None) -> str | None:
    """The harness's program if it cannot be found on PATH, else None."""
    if harness.program is None or which(harness.program, path=path):
        return None
    return harness.program


def shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def validate_template(template: str) -> str:
    if not template.strip():
        raise UsageError(
            "empty launcher template: give a shell command, e.g. 'my-agent {task_file_sh}'"
        )
    unknown = sorted(
        {
            m.group(1)
            for m in _FIELD.finditer(template)
            if m.group(1) is not None and m.group(1) not in _KNOWN
        }
    )
    if unknown:
        names = ", ".join("{" + u + "}" for u in unknown)
        raise UsageError(
            f"unknown placeholder {names} in launcher template: "
            f"use one of {', '.join(PLACEHOLDERS)} (each also as _sh or _raw), "
            "or write a literal brace as {{ or }}"
        )
    return template


def render_template(template: str, values: Mapping[str, str]) -> str:
    validate_template(template)
    fields: dict[str, str] = {}
    for name in PLACEHOLDERS:
        raw = values[name]
        fields[name] = fields[name + "_raw"] = raw
        fields[name + "_sh"] = shell_quote(raw)
    return _FIELD.sub(lambda m: fields[m.group(1)] if m.group(1) else m.group(0)[0], template)
