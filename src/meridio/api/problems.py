"""Problems found in user input, worded like the Kubernetes API server and Meridio's webhooks.

One :class:`Problem` names the object, the field path and the rule. The schema codec
(:mod:`meridio.api.schema`), the resource validator (:mod:`meridio.api.validation`) and the
ConfigMap codec (:mod:`meridio.api.configmap`) all report with it, so every entry point (CLI,
local runtime, operator, NSP) shows the same sentence for the same mistake.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable

__all__ = [
    "Problem", "ProblemsError", "render_value",
    "invalid", "forbidden", "required", "unsupported", "too_long", "unknown_field",
]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One violated rule. ``str(problem)`` is ``"<kind>/<name>: <field>: <message>"``.

    ``kind``/``name`` may be empty for problems that belong to no object (a YAML syntax error:
    then ``field`` holds ``file:line:column``).
    """

    kind: str
    name: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.kind}/{self.name}: " if self.kind else ""
        return f"{where}{self.field}: {self.message}" if self.field else f"{where}{self.message}"


class ProblemsError(ValueError):
    """Raised when input is rejected; carries every problem found (never a partial result)."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def render_value(value: object) -> str:
    """A value as the API server quotes it: strings in double quotes, numbers bare, lists as JSON."""
    if isinstance(value, tuple):
        value = list(value)
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


# The detail builders below produce the part after "<field>: " in Kubernetes' field.Error wording.

def invalid(value: object, detail: str) -> str:
    return f"Invalid value: {render_value(value)}: {detail}"


def forbidden(detail: str) -> str:
    return f"Forbidden: {detail}"


def required(detail: str = "") -> str:
    return f"Required value: {detail}" if detail else "Required value"


def unsupported(value: object, supported: Iterable[str]) -> str:
    choices = ", ".join(f'"{s}"' for s in supported)
    return f"Unsupported value: {render_value(value)}: supported values: {choices}"


def too_long(limit: int) -> str:
    return f"Too long: may not be longer than {limit}"


def unknown_field(path: str) -> str:
    return f'unknown field "{path}"'
