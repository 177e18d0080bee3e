"""How the commands talk to people: plain text tables, a progress bar on a terminal, short JSON snippets.

Tables and summaries go to stdout; the progress bar goes to stderr and only when stderr is a terminal (never
with ``--json`` or ``--no-progress``), so piping a command's output never mixes in progress lines.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

SUMMARY_TEXT_MAX = 160
BAR_WIDTH = 24


class Progress:
    """``label: done/total [#####.....] 40%`` redrawn in place on ``stream``; does nothing when ``stream`` is None.

    Redraws at most every ``interval`` seconds, and once more on :meth:`close` (which ends the line).
    """

    def __init__(self, label: str, total: int | None, stream: TextIO | None, interval: float = 0.1) -> None:
        self._label = label
        self._total = total
        self._stream = stream
        self._interval = interval
        self._last = 0.0
        self._done = 0
        self._closed = False

    @property
    def enabled(self) -> bool:
        return self._stream is not None

    def update(self, done: int) -> None:
        self._done = done
        now = time.monotonic()
        if self._stream is not None and now - self._last >= self._interval:
            self._last = now
            self._draw(end="")

    def close(self) -> None:
        if self._stream is not None and not self._closed:
            self._closed = True
            self._draw(end="\n")

    def _draw(self, end: str) -> None:
        assert self._stream is not None
        if self._total:
            filled = min(BAR_WIDTH, BAR_WIDTH * self._done // self._total)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            text = f"{self._label}: {self._done}/{self._total} [{bar}] {100 * self._done // self._total}%"
        else:
            text = f"{self._label}: {self._done}/{'?' if self._total is None else self._total}"
        self._stream.write(f"\r{text}\x1b[K{end}")
        self._stream.flush()


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain left-aligned text table."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells]
    return "\n".join(lines)


def histogram_text(counts: Mapping[str, int]) -> str:
    """``reason=n, other=m``, most frequent first."""
    return ", ".join(f"{reason}={number}" for reason, number in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def short(value: Any, limit: int = SUMMARY_TEXT_MAX) -> str:
    """``value`` as text (compact JSON unless a string), cut to ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compact_json(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str)


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


GREEN, RED, RESET = "\033[32m", "\033[31m", "\033[0m"
_STATE = re.compile(r"\b(PASS|FAIL)\b")


def use_colour(stream: Any, environ: Mapping[str, str]) -> bool:
    """Colour only for a person at a terminal: a TTY, and no ``NO_COLOR`` (https://no-color.org)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"


def coloured(text: str, enabled: bool) -> str:
    """PASS in green and FAIL in red when ``enabled``; the text unchanged otherwise."""
    if not enabled:
        return text
    return _STATE.sub(lambda match: (GREEN if match[1] == "PASS" else RED) + match[1] + RESET, text)
