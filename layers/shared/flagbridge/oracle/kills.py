"""A kill's timeline, from the FAIL to the proof that the SDKs serve the flag killed (pure; epoch ms throughout).

* **t0** ``failed_at``: the evaluation that first found this flag version FAIL (the report's ``failed_since``:
  consecutive FAIL evaluations of one version keep the first one's time);
* ``claimed_at``: the evaluator claimed the kill (the first claim; a retry or a takeover keeps it);
* **t1** ``accepted_at``: Split's Admin API answered the kill with a 2xx (the evaluator's clock when the call
  returned);
* **t2** ``confirmed_at``: the ``evaluated_at`` of the first evaluation after t1 whose counters hold more events
  of users served the flag with label ``killed``, in the killed version or a newer one (Split's kill gives the
  flag a new change number), than the evaluation that called the Admin API read. "Counted" therefore means
  *counted and seen by an evaluation*: the event's impression reached the profiles, the user's next event
  reached the oracle lane, the counter absorbed it, and an evaluation read it. t2 is exact to one evaluation
  interval (``interval_minutes``), which is also how soon the oracle can act on anything.

Latencies: ``claim_ms = claimed_at - failed_at``, ``accept_ms = accepted_at - failed_at``, ``confirm_ms =
confirmed_at - accepted_at`` (null until both ends are known).

``confirmation``: ``pending`` (not accepted yet, or accepted and waiting less than ``confirm_within_ms``),
``confirmed``, ``not_confirmed`` (accepted ``confirm_within_ms`` ago or more and no ``killed`` event counted
since: the test alerts ``kill not confirmed`` once; a later confirmation still records t2 and says so),
``dry_run`` (nothing was sent) or ``failed`` (Split refused the kill). :func:`follow` returns the messages a
record is due, each sent once: ``accepted``, ``confirmed``, ``not_confirmed`` (the names in ``notified``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from flagbridge.oracle.counting import KILLED
from flagbridge.oracle.store import CounterItem

Confirmation = Literal["confirmed", "pending", "not_confirmed", "dry_run", "failed"]
KillEvent = Literal["accepted", "confirmed", "not_confirmed"]
KILL_EVENTS: tuple[KillEvent, ...] = ("accepted", "confirmed", "not_confirmed")
_BY_OUTCOME: dict[str, Confirmation] = {"killed": "pending", "dry_run": "dry_run", "refused": "failed"}


def killed_by_version(items: Iterable[CounterItem]) -> dict[str, int]:
    """Events counted under ``(killed)`` per flag version, JSON-ready (``{"<version>": events}``)."""
    counts: dict[str, int] = {}
    for item in items:
        if item.key.treatment == KILLED:
            name = str(item.key.version)
            counts[name] = counts.get(name, 0) + item.delta.n
    return counts


def killed_since_version(counts: Mapping[str, int] | None, version: int) -> int:
    """Events served ``killed`` in ``version`` or a newer one."""
    return sum(n for name, n in (counts or {}).items() if int(name) >= version)


def failed_since(report: Mapping[str, Any], previous: Mapping[str, Any] | None, now: int) -> int | None:
    """t0 of the report's FAIL: the previous evaluation's when it already failed on the same version, else now."""
    if report.get("state") != "FAIL":
        return None
    before = previous or {}
    if before.get("state") == "FAIL" and before.get("version") == report.get("version") and before.get("failed_since"):
        return int(before["failed_since"])
    return now


def begin(
    record: dict[str, Any], *, failed_at: int, claimed_at: int, comment: str, confirm_within_ms: int, confirmable: bool
) -> None:
    """A claimed kill's first times (kept when the claim is retried) and what will be sent. ``confirmable`` is
    False for a test that names treatments by an event attribute: its events carry no label, so no ``killed``
    event can ever be counted and ``kill not confirmed`` says so."""
    timeline = record.setdefault("timeline", {})
    timeline.setdefault("failed_at", failed_at)
    timeline.setdefault("claimed_at", claimed_at)
    timeline.setdefault("accepted_at", None)
    timeline.setdefault("confirmed_at", None)
    record["comment"] = comment
    record["confirm_within_ms"] = confirm_within_ms
    record["confirmable"] = confirmable
    record.setdefault("notified", [])
    _latencies(timeline)


def settle(record: dict[str, Any], outcome: str, at: int, killed_before: int) -> None:
    """The Admin API call's outcome: t1 on success, with the ``killed`` events already counted (the baseline)."""
    if outcome == "killed":
        record["timeline"]["accepted_at"] = at
        record["killed_before"] = killed_before
    record["confirmation"] = _BY_OUTCOME.get(outcome, "pending")
    _latencies(record["timeline"])


def follow(record: dict[str, Any], killed: int, now: int, confirm_within_ms: int) -> list[KillEvent]:
    """Update the confirmation from the ``killed`` events counted now (see :func:`killed_since_version`);
    the messages due, oldest first, not yet in ``record["notified"]``."""
    timeline = record.setdefault("timeline", _legacy_timeline(record))
    record.setdefault("confirm_within_ms", confirm_within_ms)
    record.setdefault("notified", [])
    accepted = timeline.get("accepted_at")
    status = record.get("status")
    if status != "killed" or accepted is None:
        record["confirmation"] = _BY_OUTCOME.get(str(status), "pending")
    elif timeline.get("confirmed_at") is None and killed > int(record.get("killed_before") or 0):
        timeline["confirmed_at"] = now
        record["confirmation"] = "confirmed"
    elif timeline.get("confirmed_at") is None:
        late = now - int(accepted) >= int(record["confirm_within_ms"])
        record["confirmation"] = "not_confirmed" if late else "pending"
    _latencies(timeline)
    record["confirmed"] = record["confirmation"] == "confirmed"
    due: list[KillEvent] = []
    for event in KILL_EVENTS:
        happened = {
            "accepted": accepted is not None,
            "confirmed": timeline.get("confirmed_at") is not None,
            "not_confirmed": record["confirmation"] == "not_confirmed",
        }[event]
        if happened and event not in record["notified"]:
            due.append(event)
    return due


def _legacy_timeline(record: Mapping[str, Any]) -> dict[str, Any]:
    """The timeline of a record written before timelines were kept: what its attempts tell."""
    accepted = next((a.get("at") for a in record.get("attempts", []) if a.get("outcome") == "killed"), None)
    start = record.get("requested_at") or record.get("claimed_at")
    return {"failed_at": start, "claimed_at": start, "accepted_at": accepted, "confirmed_at": None}


def _latencies(timeline: dict[str, Any]) -> None:
    def between(start: Any, end: Any) -> int | None:
        return None if start is None or end is None else int(end) - int(start)

    timeline["claim_ms"] = between(timeline.get("failed_at"), timeline.get("claimed_at"))
    timeline["accept_ms"] = between(timeline.get("failed_at"), timeline.get("accepted_at"))
    timeline["confirm_ms"] = between(timeline.get("accepted_at"), timeline.get("confirmed_at"))


# ---- text ------------------------------------------------------------------------------------------------


def _clock(ms: Any) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _seconds(ms: Any) -> str:
    return f"{int(ms) / 1000:.1f} s"


def timeline_lines(kill: Mapping[str, Any]) -> list[str]:
    """The timeline of a kill block for people (CLI, SNS, ``make run``): one line per time, with its latency."""
    timeline = kill.get("timeline") or {}
    if not timeline:
        return []
    lines = []
    if timeline.get("failed_at") is not None:
        lines.append(f"t0 FAIL found        {_clock(timeline['failed_at'])}")
    if timeline.get("claimed_at") is not None:
        after = f" (+{_seconds(timeline['claim_ms'])} after t0)" if timeline.get("claim_ms") is not None else ""
        lines.append(f"   kill claimed       {_clock(timeline['claimed_at'])}{after}")
    if timeline.get("accepted_at") is not None:
        lines.append(
            f"t1 Split accepted    {_clock(timeline['accepted_at'])} (+{_seconds(timeline['accept_ms'])} after t0)"
        )
    else:
        lines.append(f"t1 Split accepted    - ({kill.get('status')})")
    if timeline.get("confirmed_at") is not None:
        lines.append(
            f"t2 `killed` counted  {_clock(timeline['confirmed_at'])} (+{_seconds(timeline['confirm_ms'])} after t1)"
        )
    else:
        wait = kill.get("confirm_within_ms")
        within = f", expected within {_seconds(wait)} of t1" if wait is not None and timeline.get("accepted_at") else ""
        lines.append(f"t2 `killed` counted  - (none yet{within})")
    return lines


def headline(kill: Mapping[str, Any]) -> str:
    """``Kill of version V: <status>, <confirmation>`` (the first line above :func:`timeline_lines`)."""
    return f"Kill of version {kill.get('version')}: {kill.get('status')}, {kill.get('confirmation', 'pending')}"
