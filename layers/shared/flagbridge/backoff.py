"""Retry delays shared by every outbound client: exponential backoff with full jitter, and ``Retry-After``.

A leaf module (standard library only) so that clients on cold-start paths (Split's events API, Split's Admin API)
share one implementation without importing each other's models.

:func:`backoff_delay` is exponential backoff with full jitter (``uniform(0, min(cap, base * 2 ** (attempt - 1)))``)
and honours ``Retry-After``: given as seconds or an HTTP-date, the server's delay is returned as-is (never
shortened, not capped: a caller that cannot wait that long should give up and requeue).
"""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime
from typing import Protocol

__all__ = ["backoff_delay", "parse_retry_after"]


_SECONDS = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")


class _Random(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


def parse_retry_after(header: str | None, now_s: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header: delay seconds, or an HTTP-date relative to ``now_s``.

    Returns None when the header is absent or malformed (any value: a target's header is untrusted input);
    past dates and negative delays give 0. Seconds are ASCII digits only: ``str.isdigit`` and ``float`` also
    accept ``²`` or ``٣``, which are not delay-seconds.
    """
    if header is None:
        return None
    text = header.strip()
    if not text:
        return None
    if _SECONDS.fullmatch(text):
        seconds = float(text)
        return max(0.0, seconds) if seconds != float("inf") else None
    try:
        when = parsedate_to_datetime(text)
        if when is None:
            return None
        stamp = when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    current = time.time() if now_s is None else now_s
    return max(0.0, stamp - current)


def backoff_delay(
    attempt: int,
    base: float,
    cap: float,
    retry_after_header: str | None,
    rng: _Random,
    now_s: float | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt``.

    Parameters
    ----------
    attempt
        1 for the first retry, 2 for the second...
    base
        Base delay in seconds.
    cap
        Upper bound of the computed (jittered) backoff.
    retry_after_header
        The response's ``Retry-After`` value, if any (seconds or HTTP-date).
    rng
        Source of randomness with ``uniform(a, b)`` (e.g. ``random.Random(seed)``).
    now_s
        Current epoch seconds for HTTP-date headers (default: ``time.time()``).

    Returns
    -------
    float
        The ``Retry-After`` delay when the header parses, else ``uniform(0, min(cap, base * 2**(attempt-1)))``.
    """
    retry_after = parse_retry_after(retry_after_header, now_s)
    if retry_after is not None:
        return retry_after
    exponent = min(max(attempt, 1) - 1, 62)
    ceiling = min(cap, base * (2.0**exponent))
    return rng.uniform(0.0, max(0.0, ceiling))
