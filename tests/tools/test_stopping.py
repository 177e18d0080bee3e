"""The local processes' stop request: a SIGTERM ends the main thread's wait and is named."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from local.stopping import StopRequest


@pytest.fixture
def restored_handlers() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@pytest.mark.usefixtures("restored_handlers")
def test_a_sigterm_ends_the_wait_and_is_named() -> None:
    stop = StopRequest()
    stop.install()
    assert not stop.requested and stop.signal_name == ""
    threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM)).start()
    stop.wait(poll_seconds=0.01)
    assert stop.requested and stop.signal_name == "SIGTERM"
