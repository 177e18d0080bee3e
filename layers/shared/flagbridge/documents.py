"""Reading a user's document (JSON or YAML text): size first, then a parse linear in the text.

Every reader of user documents (the bridge configuration, a traffic plan, model or HAR) goes through this module
so that the same limits and the same error wording hold on every path (the CLI's files, ``POST /runs``, the
schedule's keys, the configuration file):

- the size is checked before anything is parsed (:data:`MAX_DOCUMENT_BYTES`);
- JSON: nesting deeper than the parser's recursion is a refusal, not a crash; ``NaN``/``Infinity`` are refused;
- YAML: nesting deeper than :data:`MAX_YAML_DEPTH` is refused while scanning (PyYAML's scanner is quadratic
  in it); the first anchor or alias is refused while the text is being composed, before any Python object is
  constructed, so that an alias bomb (a few hundred bytes naming a billion nodes) costs nothing. A plan, model
  or configuration never needs them (the shipped examples have none).

Each failure is one error of the caller's class (a :class:`~flagbridge.errors.FlagbridgeError`: ``ConfigError``,
``PlanError``...), naming the source (the file, and the key that named it) and, for YAML, the line and column.
PyYAML is imported only when YAML is parsed: the deployed functions read JSON (docs/runs.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flagbridge.errors import FlagbridgeError

MAX_DOCUMENT_BYTES = 1_000_000  # a plan, a model or a configuration, from a file or a run request
MAX_HAR_BYTES = 50_000_000  # a HAR holds every response body of a browser session; only the CLI reads one
MAX_YAML_DEPTH = 64  # nested collections in a plan, model or configuration: a handful are used


def check_size(text: str | bytes, source: str, error: type[FlagbridgeError], limit: int = MAX_DOCUMENT_BYTES) -> None:
    """Refuse ``text`` over ``limit`` bytes before anything looks inside it."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise error(f"{source}: larger than {limit} bytes ({size})")


def read_file(path: Path, what: str, error: type[FlagbridgeError], limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """A user's file, refused by its size before it is read; ``what`` names it in errors ("the plan")."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise error(f"{path}: larger than {limit} bytes ({size})")
        return path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from exc


def read_text(path: Path, what: str, error: type[FlagbridgeError], limit: int = MAX_DOCUMENT_BYTES) -> str:
    try:
        return read_file(path, what, error, limit).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text: {exc}") from None


def load_json(text: str | bytes, source: str, error: type[FlagbridgeError], limit: int = MAX_DOCUMENT_BYTES) -> Any:
    check_size(text, source, error, limit)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise error(f"{source}: not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4300 digits
        raise error(f"{source}: not valid JSON: {str(exc)[:200]}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_yaml(
    text: str | bytes,
    source: str,
    error: type[FlagbridgeError],
    limit: int = MAX_DOCUMENT_BYTES,
    aliases: bool = False,
) -> Any:
    """Parse YAML with the safe loader after refusing anchors and aliases (scanned as events, nothing built);
    ``aliases`` lets them through, for a document its own author writes (the deployment's configuration)."""
    check_size(text, source, error, limit)
    import yaml

    class Loader(yaml.SafeLoader):
        # Nesting bounded while scanning: PyYAML's scanner checks every open flow level for each token, so a
        # document of 100,000 "[" took minutes (quadratic) before its recursion gave up.
        def fetch_flow_collection_start(self, token_class: Any) -> None:
            if self.flow_level >= MAX_YAML_DEPTH:
                raise error(f"{source}: line {self.line + 1}: YAML nested deeper than {MAX_YAML_DEPTH} levels")
            super().fetch_flow_collection_start(token_class)

        def add_indent(self, column: int) -> bool:
            if len(self.indents) >= MAX_YAML_DEPTH:
                raise error(f"{source}: line {self.line + 1}: YAML nested deeper than {MAX_YAML_DEPTH} levels")
            return bool(super().add_indent(column))

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            refused = isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None
            if refused and not aliases:
                raise error(
                    f"{source}: line {event.start_mark.line + 1}: YAML anchors and aliases (&name, *name) are "
                    "refused; write the values out"
                )
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=Loader)  # a subclass of the safe loader
    except error:
        raise
    except RecursionError:
        raise error(f"{source}: not valid YAML: nested too deeply") from None
    except (yaml.YAMLError, ValueError) as exc:
        raise error(f"{source}: not valid YAML{_yaml_problem(exc)}") from None


def _yaml_problem(exc: Exception) -> str:
    """Where and what, in a person's words: ``at line 3, column 1: expected ...`` (not the parser's dump)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or ""
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    if not problem and mark is None:
        problem = " ".join(str(exc).split())[:200] or type(exc).__name__
    return f"{where}: {problem}" if problem else where


def load_document(
    text: str | bytes,
    fmt: str,
    source: str,
    error: type[FlagbridgeError],
    limit: int = MAX_DOCUMENT_BYTES,
    aliases: bool = False,
) -> Any:
    """``fmt`` ``json`` or ``yaml`` (a file's suffix decides which for the CLI)."""
    if fmt == "json":
        return load_json(text, source, error, limit)
    return load_yaml(text, source, error, limit, aliases)
