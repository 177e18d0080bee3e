"""In-process Lambda invocation: a function's handler imported as Lambda imports it, the context object it gets,
and the runner's log line on stderr."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from local.resources import FunctionSpec


def log(message: str) -> None:
    print(f"[flagbridge-local] {message}", file=sys.stderr, flush=True)


class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools use."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = f"local/{self.aws_request_id}"
        self._deadline = time.monotonic() + spec.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class LoadedFunction:
    """A function's spec, its imported handler (or why the import failed) and its one-at-a-time lock."""

    spec: FunctionSpec
    handler: Callable[[Any, Any], Any] | None = None
    import_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def import_handler(spec: FunctionSpec) -> Callable[[Any, Any], Any]:
    """Import ``<CodeUri>/<module>.py`` under a unique module name and return its handler function."""
    module_path, _, function_name = spec.handler.rpartition(".")
    source = spec.code_dir / (module_path.replace(".", "/") + ".py")
    if not source.exists():
        source = spec.code_dir / module_path.replace(".", "/") / "__init__.py"
    unique_name = f"flagbridge_local_fn_{spec.logical_id}"
    module_spec = importlib.util.spec_from_file_location(unique_name, source)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot import {source}")
    module: ModuleType = importlib.util.module_from_spec(module_spec)
    sys.modules[unique_name] = module
    code_dir = str(spec.code_dir)
    sys.path.insert(0, code_dir)  # sibling modules of the handler, as in Lambda's /var/task
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(unique_name, None)
        raise
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(code_dir)
    handler = getattr(module, function_name, None)
    if not callable(handler):
        raise ImportError(f"{source} has no callable {function_name}")
    return handler
