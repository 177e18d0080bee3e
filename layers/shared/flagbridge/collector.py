"""The cyclic garbage collector paused while one SQS batch is handled (the impression processor, the oracle counter).

A batch allocates tens of thousands of short-lived, acyclic containers (parsed messages, rows, states, events,
contributions) that live until the batch is written and that reference counting then frees. The collections their
allocation triggers would find nothing to collect, and each older-generation one re-scans everything the batch
still holds (about a tenth of a batch's CPU time).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """The collector off for the block, then as it was before (also when the block raises)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
