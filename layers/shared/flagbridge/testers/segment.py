"""The tester registry drives Split segments: a flag targeting ``in segment <name>`` serves testers its treatment
with no new flag version (editing a flag's individual targets would create one, restarting Split's metrics and
the oracle's window).

Per environment and traffic type, the configuration's ``testers.segments`` names a segment
(:class:`flagbridge.config.TesterSegment`). Then:

* registering a tester stores it ``pending`` and adds its key through Split's Admin API
  (:class:`flagbridge.oracle.split_admin.SplitAdminClient`, 429 and 5xx handled as for the kill); once every
  segment of its traffic type took the key the registration is marked ``synced``;
* removing a tester removes its key;
* :meth:`SegmentSync.reconcile` (a schedule) makes each segment equal to the active registrations of its traffic
  type: it lists the segment, adds what is missing, removes what is not registered (expired registrations
  included), in calls of at most Split's batch limit, and marks what is in the segment ``synced``.

The registration is written before any call and a failed call never raises into the registry: the registration
stays ``pending`` (``GET /testers`` shows it) and the next reconcile repairs the segment. Every key added or
removed gets an audit entry (``segment_add``/``segment_remove``) with who (the registering caller, or the
reconcile's actor) and why. The segment belongs to the registry: keys added to it by hand are removed by the
next reconcile. A ``dry_run`` target (or a dry-run reconcile) lists, computes and reports, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from flagbridge.oracle.split_admin import segment_key_accepted
from flagbridge.testers.registry import AuditEntry, Registration, SegmentState, iso

if TYPE_CHECKING:
    from flagbridge.config import TesterSegment
    from flagbridge.oracle.split_admin import SegmentListing, SegmentUpdate

READ_PAGE = 1000  # registrations per read of the registry during a reconcile
MAX_REASON_IN_COMMENT = 200

Problem = Callable[[str, dict[str, Any]], None]


class SegmentClient(Protocol):
    """What the sync needs of :class:`flagbridge.oracle.split_admin.SplitAdminClient`."""

    def add_segment_keys(
        self, environment: str, segment: str, keys: Sequence[str], comment: str, *, dry_run: bool = False
    ) -> SegmentUpdate: ...

    def remove_segment_keys(
        self, environment: str, segment: str, keys: Sequence[str], comment: str, *, dry_run: bool = False
    ) -> SegmentUpdate: ...

    def segment_keys(self, environment: str, segment: str) -> SegmentListing: ...


class SegmentStore(Protocol):
    """What the sync needs of the registry's store (both adapters implement it)."""

    def page(self, limit: int, after: str | None) -> tuple[list[Registration], str | None]: ...

    def mark_segment(self, registrations: Sequence[Registration], state: SegmentState) -> int: ...

    def write_audits(self, audits: Sequence[AuditEntry]) -> None: ...


@dataclass
class TargetReport:
    """One segment's reconcile: what it held, what changed, the Admin API calls by kind, and the outcome."""

    environment: str
    segment: str
    traffic_type: str
    outcome: str = "ok"
    listed: int = 0
    to_add: int = 0
    to_remove: int = 0
    refused_keys: int = 0  # registered keys Split would refuse: never sent, reported
    added: int = 0
    removed: int = 0
    calls: dict[str, int] = field(default_factory=lambda: {"list": 0, "add": 0, "remove": 0})

    def document(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ReconcileReport:
    actor: str
    dry_run: bool
    registered: int = 0
    marked_synced: int = 0
    targets: list[TargetReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(target.outcome in ("ok", "dry_run") for target in self.targets)

    @property
    def write_calls(self) -> int:
        return sum(target.calls["add"] + target.calls["remove"] for target in self.targets)

    def document(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "dryRun": self.dry_run,
            "ok": self.ok,
            "registered": self.registered,
            "markedSynced": self.marked_synced,
            "segments": [target.document() for target in self.targets],
        }


def _ignore(_message: str, _extra: dict[str, Any]) -> None:
    return None


def _comment(actor: str, why: str) -> str:
    return f"flagbridge tester registry: {why[:MAX_REASON_IN_COMMENT]} (by {actor})"


class SegmentSync:
    """Keeps the configured segments equal to the registry; the registry's :class:`SegmentHook`."""

    def __init__(
        self,
        targets: Sequence[TesterSegment],
        client: SegmentClient | None,
        store: SegmentStore,
        clock: Callable[[], float],
        on_problem: Problem = _ignore,
    ) -> None:
        self._targets = list(targets)
        self._client = client
        self._store = store
        self._clock = clock
        self._on_problem = on_problem

    def targets_of(self, traffic_type: str) -> list[TesterSegment]:
        return [target for target in self._targets if target.traffic_type == traffic_type]

    # ---- the registry's hook ------------------------------------------------------------------------------

    def registering(self, traffic_type: str) -> SegmentState | None:
        return "pending" if self.targets_of(traffic_type) else None

    def registered(self, registrations: Sequence[Registration]) -> None:
        if self._client is None:  # no Admin API credential here: stored pending, the reconcile adds them
            return
        by_type: dict[str, list[Registration]] = {}
        for registration in registrations:
            by_type.setdefault(registration.traffic_type, []).append(registration)
        for traffic_type, group in by_type.items():
            targets = self.targets_of(traffic_type)
            if not targets:
                continue
            first = group[0]
            why = f"registered until {iso(first.expires_at)}: {first.reason}"
            synced = True
            for target in targets:
                add = partial(self._add, target, group, first.registered_by, why, dry_run=target.dry_run)
                synced &= self._guarded("add", target, add)
            if synced:
                self._guarded_mark([r for r in group if segment_key_accepted(r.key)])

    def removed(self, audit: AuditEntry) -> None:
        if self._client is None:  # the reconcile removes what nobody registered
            return
        for target in self.targets_of(audit.traffic_type):
            why = f"removed: {audit.reason}"
            self._guarded(
                "remove", target, partial(self._remove, target, [audit.key], audit.actor, why, dry_run=target.dry_run)
            )

    def _guarded(self, what: str, target: TesterSegment, call: Callable[[], bool]) -> bool:
        """Run a segment change; any failure is reported and left to the reconcile, never raised."""
        try:
            return call()
        except Exception as exc:
            self._on_problem(
                "tester segment update failed; the reconcile will repair it",
                {"action": what, "segment": target.segment, "environment": target.environment,
                 "error_type": type(exc).__name__},
            )  # fmt: skip
            return False

    def _guarded_mark(self, registrations: Sequence[Registration]) -> int:
        try:
            return self._store.mark_segment(registrations, "synced")
        except Exception as exc:
            self._on_problem("tester segment state not saved", {"error_type": type(exc).__name__})
            return 0

    # ---- one change, audited --------------------------------------------------------------------------------

    def _add(
        self, target: TesterSegment, registrations: Sequence[Registration], actor: str, why: str, *, dry_run: bool
    ) -> bool:
        assert self._client is not None
        keys = [registration.key for registration in registrations if segment_key_accepted(registration.key)]
        if len(keys) < len(registrations):
            self._on_problem(
                "registered keys Split would refuse are left out of the segment",
                {"segment": target.segment, "environment": target.environment,
                 "keys": len(registrations) - len(keys)},
            )  # fmt: skip
            if not keys:
                return False
        update = self._client.add_segment_keys(
            target.environment, target.segment, keys, _comment(actor, why), dry_run=dry_run
        )
        self._audit(target, "segment_add", update.applied, actor, why)
        self._report_failure(target, "add", update)
        return update.outcome == "ok"

    def _remove(self, target: TesterSegment, keys: Sequence[str], actor: str, why: str, *, dry_run: bool) -> bool:
        assert self._client is not None
        update = self._client.remove_segment_keys(
            target.environment, target.segment, keys, _comment(actor, why), dry_run=dry_run
        )
        self._audit(target, "segment_remove", update.applied, actor, why)
        self._report_failure(target, "remove", update)
        return update.outcome == "ok"

    def _report_failure(self, target: TesterSegment, action: str, update: SegmentUpdate) -> None:
        if update.outcome in ("ok", "dry_run"):
            return
        last = update.calls[-1].attempts[-1] if update.calls and update.calls[-1].attempts else {}
        self._on_problem(
            "tester segment update not applied; the reconcile will repair it",
            {"action": action, "segment": target.segment, "environment": target.environment,
             "outcome": update.outcome, "status": last.get("status"), "applied": len(update.applied)},
        )  # fmt: skip

    def _audit(self, target: TesterSegment, action: str, keys: Iterable[str], actor: str, why: str) -> None:
        at = int(self._clock() * 1000)
        detail = f"{target.environment}/{target.segment}"
        audits = [
            AuditEntry(target.traffic_type, key, action, actor, at, why[:200], None, detail)  # type: ignore[arg-type]
            for key in keys
        ]
        if not audits:
            return
        try:
            self._store.write_audits(audits)
        except Exception as exc:
            self._on_problem(
                "tester segment change applied but its audit entries were not written",
                {"action": action, "segment": target.segment, "keys": len(audits), "error_type": type(exc).__name__},
            )

    # ---- the reconcile --------------------------------------------------------------------------------------

    def reconcile(self, actor: str, *, dry_run: bool = False) -> ReconcileReport:
        """Make every configured segment equal to the active registrations of its traffic type."""
        if self._client is None:
            raise ValueError("a reconcile needs the Split Admin API client")
        now = self._clock()
        registrations = self._all_registrations()
        active = [registration for registration in registrations if registration.active(now)]
        expired = {registration.user_id for registration in registrations if not registration.active(now)}
        report = ReconcileReport(actor, dry_run, registered=len(active))
        failed_types: set[str] = set()
        for target in self._targets:
            desired = {r.key: r for r in active if r.traffic_type == target.traffic_type}
            outcome = self._reconcile_target(target, desired, expired, actor, dry_run or target.dry_run)
            report.targets.append(outcome)
            if outcome.outcome != "ok":
                failed_types.add(target.traffic_type)
        if not dry_run:
            to_mark = [
                r
                for r in active
                if r.segment != "synced" and r.traffic_type not in failed_types and self.targets_of(r.traffic_type)
                and segment_key_accepted(r.key)
                and not all(t.dry_run for t in self.targets_of(r.traffic_type))
            ]  # fmt: skip
            if to_mark:
                report.marked_synced = self._guarded_mark(to_mark)
        return report

    def _reconcile_target(
        self,
        target: TesterSegment,
        desired: dict[str, Registration],
        expired: set[str],
        actor: str,
        dry_run: bool,
    ) -> TargetReport:
        report = TargetReport(target.environment, target.segment, target.traffic_type)
        assert self._client is not None
        listing = self._client.segment_keys(target.environment, target.segment)
        report.calls["list"] = listing.calls
        if listing.outcome != "ok":
            report.outcome = f"list {listing.outcome}"
            self._on_problem(
                "tester segment could not be listed; nothing changed",
                {"segment": target.segment, "environment": target.environment, "outcome": listing.outcome},
            )
            return report
        present = set(listing.keys)
        report.listed = len(present)
        to_add = sorted(key for key in set(desired) - present if segment_key_accepted(key))
        report.refused_keys = len(set(desired) - present) - len(to_add)
        if report.refused_keys:
            self._on_problem(
                "registered keys Split would refuse are left out of the segment",
                {"segment": target.segment, "environment": target.environment, "keys": report.refused_keys},
            )
        to_remove = sorted(present - set(desired))
        report.to_add, report.to_remove = len(to_add), len(to_remove)
        if dry_run:
            report.outcome = "dry_run"
            return report
        if to_add:
            update = self._client.add_segment_keys(
                target.environment, target.segment, to_add, _comment(actor, "reconcile: registered")
            )
            report.calls["add"] = len(update.calls)
            report.added = len(update.applied)
            self._audit_each(target, "segment_add", update.applied, actor, desired, expired)
            self._report_failure(target, "add", update)
            if update.outcome != "ok":
                report.outcome = f"add {update.outcome}"
        if to_remove:
            update = self._client.remove_segment_keys(
                target.environment, target.segment, to_remove, _comment(actor, "reconcile: not registered")
            )
            report.calls["remove"] = len(update.calls)
            report.removed = len(update.applied)
            self._audit_each(target, "segment_remove", update.applied, actor, desired, expired)
            self._report_failure(target, "remove", update)
            if update.outcome != "ok" and report.outcome == "ok":
                report.outcome = f"remove {update.outcome}"
        return report

    def _audit_each(
        self,
        target: TesterSegment,
        action: str,
        keys: Sequence[str],
        actor: str,
        desired: dict[str, Registration],
        expired: set[str],
    ) -> None:
        """Audit entries whose "why" says, per key, what the reconcile found."""
        groups: dict[str, list[str]] = {}
        for key in keys:
            if action == "segment_add":
                why = f"reconcile: registered until {iso(desired[key].expires_at)}"
            elif f"{target.traffic_type}#{key}" in expired:
                why = "reconcile: registration expired"
            else:
                why = "reconcile: not registered"
            groups.setdefault(why, []).append(key)
        for why, group in groups.items():
            self._audit(target, action, group, actor, why)

    def _all_registrations(self) -> list[Registration]:
        registrations: list[Registration] = []
        after: str | None = None
        while True:
            page, after = self._store.page(READ_PAGE, after)
            registrations.extend(page)
            if after is None:
                return registrations
