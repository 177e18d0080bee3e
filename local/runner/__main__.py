"""``python -m local.runner`` (``make run``): starts the bridge, replays the samples, runs the demo (the whole test
loop: :mod:`local.demo`), prints the summary, serves.

The terminal is for a person: one line per invocation on stderr and the summary on stdout. The handlers' JSON log
lines and metric blobs go to ``build/local-run.log`` (``--log-file``), or to stdout with ``--verbose``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import local.runner
from flagbridge_ops.output import coloured, use_colour
from local.botocore_loaders import share_botocore_data_loaders
from local.resources import ROOT
from local.runner.bridge import LocalBridge
from local.runner.invoke import log
from local.runner.output import HandlerOutput
from local.stopping import StopRequest

DEFAULT_LOG_FILE = ROOT / "build" / "local-run.log"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local.runner",
        description=local.runner.__doc__.split("\n\n")[0] if local.runner.__doc__ else None,
        epilog="Example: make run ARGS='--verbose --port 3001'",
    )
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default: $PORT or 3000)")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"), help="bind address (127.0.0.1)")
    parser.add_argument(
        "--no-replay", action="store_true", help="skip the sample replay and the demo (FLAGBRIDGE_NO_REPLAY=1)"
    )
    parser.add_argument("--no-demo", action="store_true", help="skip the demo (FLAGBRIDGE_NO_DEMO=1)")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print the handlers' JSON logs and metrics here, not to a file"
    )
    parser.add_argument(
        "--log-file",
        type=Path,
        default=DEFAULT_LOG_FILE,
        help="where the handlers' JSON logs and metrics go (default: build/local-run.log, overwritten)",
    )
    return parser.parse_args(argv)


@contextlib.contextmanager
def handler_output(verbose: bool, log_file: Path) -> Iterator[HandlerOutput]:
    """``sys.stdout`` replaced for the handlers: the log file, or the terminal itself with ``--verbose``."""
    terminal = sys.stdout
    with contextlib.ExitStack() as stack:
        if verbose:
            output = HandlerOutput(terminal)
        else:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            sink = stack.enter_context(log_file.open("w", encoding="utf-8", buffering=1))
            output = HandlerOutput(sink, log_file.resolve())
        sys.stdout = output
        try:
            yield output
        finally:
            sys.stdout = terminal


def run_demo(bridge: LocalBridge) -> str:
    """The demo's summary (:mod:`local.demo.run`), or why it could not complete; the bridge keeps serving."""
    from local.demo.run import DEFAULT_WORKDIR
    from local.demo.run import run_demo as run_loop
    from local.demo.service import local_secret

    log("demo: the sample service under test, a traffic plan as testers, the oracle's verdicts (docs/demo.md)")
    try:
        with bridge.invocation_tally() as tally:

            def progress(message: str) -> None:
                tally.flush()  # the invocations of the step that ends, then the next step
                log(f"demo: {message}")

            result = run_loop(
                bridge.url,
                lambda name: bridge.secret_value(name) or local_secret(name),
                bridge_config=Path(os.environ["FLAGBRIDGE_CONFIG"]),
                workdir=Path(os.environ.get("FLAGBRIDGE_DEMO_DIR") or DEFAULT_WORKDIR),
                log=progress,
            )
    except Exception as exc:
        log(f"demo: could not complete: {exc}")
        return f"The demo could not complete: {exc} (`make demo` runs it again against this bridge)"
    return result.summary() + "\n  (`make demo` runs it again: a new flag version, a new verdict)"


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    share_botocore_data_loaders()
    terminal = sys.stdout
    replaying = not (args.no_replay or _truthy(os.environ.get("FLAGBRIDGE_NO_REPLAY")))
    demo = replaying and not (args.no_demo or _truthy(os.environ.get("FLAGBRIDGE_NO_DEMO")))
    if demo:  # the oracle evaluates every 5 s instead of 15, so the demo's verdicts come within its minute
        os.environ.setdefault("FLAGBRIDGE_LOCAL_SCHEDULE_SECONDS", "5")
    stopping = StopRequest()
    stopping.install()
    with handler_output(args.verbose, args.log_file) as output:
        bridge = LocalBridge(port=args.port, host=args.host, handler_output=output)
        try:
            bridge.start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            log(
                f"port {bridge.port} on {bridge.host} is taken (another `make run`?): stop that one, "
                f"or use another port: PORT={bridge.port + 1} make run"
            )
            return 1
        except Exception:
            log("startup failed:")
            traceback.print_exc(file=sys.stderr)
            return 1
        stopping.install()  # again: imported handler code must not leave us without a clean shutdown
        try:
            log(f"ready on {bridge.url} in {bridge.startup_seconds:.2f}s")
            replay = None
            if replaying and not stopping.requested:
                replay = bridge.replay_samples()
                replay["mparticle"] = bridge.replay_mparticle_samples()
            colour = use_colour(terminal, os.environ)
            if demo and not stopping.requested:
                # What the bridge offers first, while the demo (a minute) reports its own progress below it.
                print(coloured(bridge.summary(replay, closing=False), colour), file=terminal, flush=True)
                demo_summary = run_demo(bridge)
                print(coloured("\n".join(bridge.closing_lines(demo_summary)), colour), file=terminal, flush=True)
            else:
                print(coloured(bridge.summary(replay), colour), file=terminal, flush=True)
            stopping.wait()
        finally:
            if stopping.requested:
                log(f"{stopping.signal_name} received, stopping")
            stopping_started = time.perf_counter()
            bridge.stop()
            log(f"stopped in {time.perf_counter() - stopping_started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
