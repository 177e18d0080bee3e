"""``python -m local.runner`` (``make run``): starts the bridge, replays the samples, prints the summary, serves."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

import local.runner
from local.runner.bridge import LocalBridge
from local.runner.invoke import log


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local.runner",
        description=local.runner.__doc__.split("\n\n")[0] if local.runner.__doc__ else None,
    )
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default: $PORT or 3000)")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"), help="bind address (127.0.0.1)")
    parser.add_argument("--no-replay", action="store_true", help="skip the sample replay (FLAGBRIDGE_NO_REPLAY=1)")
    args = parser.parse_args(argv)

    stopping = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log(f"{signal.Signals(signum).name} received, stopping")
        stopping.set()

    def install_signal_handlers() -> None:
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

    install_signal_handlers()
    bridge = LocalBridge(port=args.port, host=args.host)
    try:
        bridge.start()
    except Exception:
        log("startup failed:")
        traceback.print_exc(file=sys.stderr)
        return 1
    install_signal_handlers()  # again: imported handler code must not leave us without a clean shutdown
    try:
        log(f"ready on {bridge.url} in {bridge.startup_seconds:.2f}s")
        replay = None
        if not (args.no_replay or _truthy(os.environ.get("FLAGBRIDGE_NO_REPLAY"))) and not stopping.is_set():
            replay = bridge.replay_samples()
            replay["mparticle"] = bridge.replay_mparticle_samples()
        print(bridge.summary(replay), flush=True)
        while not stopping.wait(0.2):
            pass
    finally:
        stopping_started = time.perf_counter()
        bridge.stop()
        log(f"stopped in {time.perf_counter() - stopping_started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
