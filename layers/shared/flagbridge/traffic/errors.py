"""Errors of the traffic generator: each one is a single line naming what is wrong and where."""

from __future__ import annotations

from flagbridge.errors import FlagbridgeError


def one_line(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\n``, ``\\ud800``): an error is always one line."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


MAX_MESSAGE_CHARS = 1500  # an error quoting a hostile value (50,000 spaces) stays readable, and cheap to log


def shortened(text: str) -> str:
    """``text`` cut in the middle when longer than :data:`MAX_MESSAGE_CHARS` (its start and end say where)."""
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    keep = MAX_MESSAGE_CHARS // 2
    return f"{text[:keep]}…({len(text) - 2 * keep} characters)…{text[-keep:]}"


class TrafficError(FlagbridgeError, ValueError):
    """Base class: a traffic plan, request model or run setting was refused before anything was sent."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(shortened(message)))


class PlanError(TrafficError):
    """The traffic plan is invalid; the message names the key (``'headers.value_chance'``) and the value."""


class ModelError(TrafficError):
    """The request model (or a HAR file) is invalid; the message names the request and the field."""


class SafetyError(TrafficError):
    """A run would leave its safety envelope: a host outside the allowlist, a non-tester key, a destructive method."""
