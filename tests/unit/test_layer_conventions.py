"""Conventions of the layer package: one exception family, one list of quarantine sources, one wiring rule."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from flagbridge.errors import FlagbridgeError
from flagbridge.quarantine import QuarantineSource
from tests.conftest import ROOT

PACKAGE = ROOT / "layers" / "shared" / "flagbridge"


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_exception_of_the_layer_is_a_flagbridge_error_ending_in_error() -> None:
    exceptions = {
        f"{module}.{name}": cls
        for module in _modules()
        for name, cls in vars(importlib.import_module(module)).items()
        if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == module
    }
    assert len(exceptions) >= 10, sorted(exceptions)
    assert [name for name, cls in exceptions.items() if not issubclass(cls, FlagbridgeError)] == []
    assert [name for name in exceptions if not name.endswith("Error")] == []


def test_the_quarantine_sources_keep_their_stored_values() -> None:
    # stored objects' keys and the operator CLI depend on these strings
    assert {source.value for source in QuarantineSource} == {
        "split-impressions",
        "impressions-processor",
        "mparticle-batches",
        "cdp-router",
        "destination-delivery",
        "oracle-counter",
        "traffic-shards",
    }
    assert f"{QuarantineSource.CDP_ROUTER}/2026" == "cdp-router/2026"


def test_every_quarantine_writer_and_the_cli_name_sources_from_the_enum() -> None:
    literal_sources = [
        str(path.relative_to(ROOT))
        for path in [*PACKAGE.rglob("*.py"), *(ROOT / "ops").rglob("*.py")]
        for value in QuarantineSource
        if path.name != "quarantine.py" and f'"{value.value}"' in Path(path).read_text(encoding="utf-8")
    ]
    assert literal_sources == []


# ---- the wiring rule: runtime.py builds every service; a handler parses, calls one service, shapes the answer ----

HANDLERS = sorted((ROOT / "functions").glob("*/*.py"))
AWS_CLIENT_CALLS = frozenset({"client", "resource", "aws_client"})
"""``boto3.client(...)``, ``session.client(...)``, ``runtime.aws_client(...)``: only runtime.py makes clients."""
QUEUE_AND_QUARANTINE_CALLS = frozenset(
    {
        "quarantine",  # runtime.quarantine(): the services keep what they cannot use
        "put_message",
        "put_object",
        "send_bodies",
        "send_delayed",
        "send_message",
        "send_message_batch",
        "change_message_visibility",
        "change_message_visibility_batch",
        "delete_message",
    }
)
CACHE_DECORATORS = frozenset({"cache", "lru_cache", "cached_property"})


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def wiring_violations(source: str) -> list[str]:
    """What in a handler module's source breaks the wiring rule, one ``line: reason`` each."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{node.lineno}: imports {m}" for m in modules if m.split(".")[0] in ("boto3", "botocore")]
        elif isinstance(node, ast.Call):
            name = _called_name(node)
            if name in AWS_CLIENT_CALLS:
                found.append(f"{node.lineno}: makes an AWS client ({name})")
            elif name in QUEUE_AND_QUARANTINE_CALLS or name.endswith("_sender"):
                found.append(f"{node.lineno}: writes to a queue or the quarantine ({name})")
        elif isinstance(node, ast.FunctionDef):
            decorators = [d.func if isinstance(d, ast.Call) else d for d in node.decorator_list]
            names = {d.attr if isinstance(d, ast.Attribute) else getattr(d, "id", "") for d in decorators}
            if names & CACHE_DECORATORS:
                found.append(f"{node.lineno}: builds a cached service ({node.name}): a factory of runtime.py")
    return found


@pytest.mark.parametrize("path", HANDLERS, ids=lambda path: path.parent.name)
def test_handlers_make_no_aws_client_and_write_to_no_queue_or_quarantine(path: Path) -> None:
    assert wiring_violations(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("import boto3\n", "imports boto3"),
        ("from botocore.config import Config\n", "imports botocore"),
        ("sqs = boto3.client('sqs')\n", "makes an AWS client (client)"),
        ("runtime.aws_client('sqs').get_queue_url(QueueName='q')\n", "makes an AWS client (aws_client)"),
        ("sqs.change_message_visibility(QueueUrl=u, ReceiptHandle=h, VisibilityTimeout=5)\n", "visibility)"),
        ("put_message(kept, source, message_id, reason='r', detail='d', item=body)\n", "(put_message)"),
        ("kept = runtime.quarantine()\n", "(quarantine)"),
        ("sender = runtime.shard_sender()\n", "(shard_sender)"),
        ("sender.send_delayed(body, 5)\n", "(send_delayed)"),
        ("@cache\ndef service() -> Any:\n    return Service()\n", "builds a cached service (service)"),
        ("@functools.lru_cache(maxsize=1)\ndef router() -> Any:\n    return Router()\n", "cached service (router)"),
    ],
)  # fmt: skip
def test_the_wiring_rule_sees_each_way_of_breaking_it(source: str, reason: str) -> None:
    [violation] = wiring_violations(source)
    assert reason in violation
