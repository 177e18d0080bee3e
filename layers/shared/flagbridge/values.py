"""Small value helpers shared by the CDP, oracle and forwarding modules (coercion and canonical forms).

mParticle treats ``"42"`` and ``42``, and ``"true"`` and ``true``, as the same value. These helpers
give every scalar one canonical string form and a numeric reading, so plan validation, tester
rules and filters all compare values the same way.
"""

from __future__ import annotations

import json
import math
from typing import Any


def canonical(value: Any) -> str | None:
    """Return the canonical string form of a scalar, or None for null and non-scalars.

    Parameters
    ----------
    value
        Any JSON value.

    Returns
    -------
    str or None
        ``True``/``"true"`` -> ``"true"``; ``42``/``42.0``/``"42"``/``"42.0"`` -> ``"42"``;
        ``4.5``/``"4.5"`` -> ``"4.5"``; other strings unchanged; None, lists and dicts -> None.
    """
    if isinstance(value, str):
        if value in ("true", "false"):
            return value
        number = _parse_number(value)
        if number is not None:
            return _number_text(number)
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return _number_text(value)
    return None


def _number_text(number: float | int) -> str:
    if isinstance(number, float) and number.is_integer() and abs(number) < 1e16:
        return str(int(number))
    return repr(number)


def _parse_number(text: str) -> int | float | None:
    stripped = text.strip()
    if not stripped or stripped[0] not in "+-0123456789.":
        return None
    try:
        return int(stripped)
    except ValueError:
        pass
    try:
        parsed = float(stripped)
    except ValueError:
        return None
    return parsed if math.isfinite(parsed) else None


def to_number(value: Any) -> int | float | None:
    """Read a value as a number: ints/floats as-is, numeric strings parsed; bools and the rest -> None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _parse_number(value)
    return None


def to_bool(value: Any) -> bool | None:
    """Read ``true``/``false`` and the strings ``"true"``/``"false"`` (any case) as booleans; else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    return None


def compact_json(value: Any) -> str:
    """Serialise deterministically (sorted keys, no spaces, non-JSON values as ``str``)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def escape_pointer_token(token: str) -> str:
    """Escape one JSON-pointer reference token (RFC 6901: ``~`` -> ``~0``, ``/`` -> ``~1``)."""
    return token.replace("~", "~0").replace("/", "~1")
