"""``flagbridge traffic run --until-decided``: the rounds of :mod:`flagbridge.traffic.decided`, set up for the CLI.

The round logic is in the layer; this module refuses what cannot run until decided (nothing sent, no oracle test),
reads the verdicts as the run's FAIL stop does (``GET <bridge>/tests/{name}`` with the oracle API's token), and
gives ``traffic run`` one object that does nothing for a run without ``--until-decided``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from flagbridge.oracle.verdicts import HttpVerdicts
from flagbridge.traffic.decided import DEFAULT_WAIT_SECONDS, HeldSummary, UntilDecided
from flagbridge.traffic.stop import Check, first_reason
from flagbridge_ops.errors import CliError, UsageError


def check_options(args: Any) -> None:
    """Before anything is read: ``--until-decided`` needs a run that sends and reads its oracle test's verdict."""
    if not getattr(args, "until_decided", False):
        return
    refused = {"--dry-run": args.dry_run, "--count-only": args.count_only, "--no-oracle": args.no_oracle}
    for option, given in refused.items():
        if given:
            raise UsageError(f"--until-decided sends until the oracle decides: it cannot be combined with {option}")


@dataclass
class RunRounds:
    """The run's rounds when ``--until-decided`` (``rounds``), else nothing changes."""

    rounds: UntilDecided | None = None

    def wire(self, stop: Check, progress: Callable[[Any, Any], None]) -> tuple[Check, Callable[[Any, Any], None]]:
        """The run loop's ``stop`` and ``progress``: the rounds' check comes after every other switch."""
        if self.rounds is None:
            return stop, progress
        return first_reason(stop, self.rounds), self.rounds.progress(progress)

    def writer(self, stream: IO[str]) -> HeldSummary | None:
        return self.rounds.writer(stream) if self.rounds is not None else None

    def finish(self, summary: Any) -> None:
        if self.rounds is not None:
            self.rounds.finish(summary)

    def results_end(self, now_ms: int) -> int:
        return self.rounds.results_end(now_ms) if self.rounds is not None else now_ms

    def verdict_wait(self, wait: float) -> float:
        """How long to wait for a decided verdict after the run: not at all once the rounds ended undecided, whose
        last look already read an evaluation of everything sent saying that more events alone will not decide."""
        if self.rounds is not None and self.rounds.ended == "undecided":
            return 0.0
        return wait

    def finished(self, summary: Any) -> bool:
        """Whether the run did what it was asked: decided when until decided, else not stopped short."""
        if self.rounds is not None:
            return self.rounds.ended == "decided"
        return not summary.stopped

    def record(self) -> dict[str, Any] | None:
        return self.rounds.record() if self.rounds is not None else None


def rounds_for(
    args: Any, prepared: Any, environ: Mapping[str, str], clients: Any, warn: Any, batch_size: int
) -> RunRounds:
    """The rounds of a run whose plan feeds an oracle test (``--requests`` is the budget); nothing without the flag."""
    if not getattr(args, "until_decided", False):
        return RunRounds()
    from flagbridge_ops.traffic import bridge_base, oracle_token

    feed = prepared.feed
    if feed is None:
        raise CliError(
            "--until-decided runs until the oracle decides, but the plan feeds no oracle test (oracle: {test: NAME})"
        )
    source = HttpVerdicts(bridge_base(prepared, args.bridge), oracle_token(environ, clients, feed.test))
    return RunRounds(
        UntilDecided(
            feed.test,
            source,
            feed.metrics,
            budget=args.requests,
            batch_size=batch_size,
            wait_seconds=args.verdict_wait if args.verdict_wait else DEFAULT_WAIT_SECONDS,
            max_duration_s=args.max_duration,
            on_error=lambda exc: warn(f"warning: {exc}; the run reads the verdict again"),
        )
    )
