"""Errors of the traffic generator: each one is a single line naming what is wrong and where."""

from __future__ import annotations

from flagbridge.errors import FlagbridgeError


class TrafficError(FlagbridgeError, ValueError):
    """Base class: a traffic plan, request model or run setting was refused before anything was sent."""


class PlanError(TrafficError):
    """The traffic plan is invalid; the message names the key (``'headers.value_chance'``) and the value."""


class ModelError(TrafficError):
    """The request model (or a HAR file) is invalid; the message names the request and the field."""


class SafetyError(TrafficError):
    """A run would leave its safety envelope: a host outside the allowlist, a non-tester key, a destructive method."""
