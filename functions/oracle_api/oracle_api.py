"""Lambda handler for ``GET /tests``, ``GET /tests/{name}`` and ``GET /tests/{name}/report``: the oracle's verdicts.

Bearer-token protected (the token is a Secrets Manager secret). ``/tests`` lists every configured test with its
current verdict per treatment and metric; ``/tests/{name}`` adds the full report (counts, rates, bounds,
thresholds, reasons), the test's configuration, its kills and the recent history; ``/tests/{name}/report`` is that
report as the self-contained HTML page ``flagbridge verdict --html`` writes. 404 for a test not configured.
"""

from __future__ import annotations

import gc

gc.disable()  # while importing; runtime.init_complete(), at the bottom, explains and re-enables it

from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.logging import correlation_paths

from flagbridge import runtime
from flagbridge.api import error_response, install_error_handlers, json_response
from flagbridge.auth import require_bearer
from flagbridge.observability import logger, metrics, tracer
from flagbridge.oracle.config import OracleConfig
from flagbridge.oracle.service import detail_document, list_document
from flagbridge.routing import HttpRouter, Response

app = HttpRouter()
install_error_handlers(app)


@app.get("/tests")
def list_tests() -> Response:
    require_bearer(app.current_event.headers, runtime.oracle_api_token())
    config: OracleConfig = runtime.oracle_config()
    return json_response(200, list_document(config, runtime.oracle_verdicts()))


def _test_document(name: str) -> dict[str, Any] | None:
    """The ``GET /tests/{name}`` document of a configured test, or None."""
    require_bearer(app.current_event.headers, runtime.oracle_api_token())
    name = (app.current_event.path_parameters or {}).get("name") or unquote(name)
    config: OracleConfig = runtime.oracle_config()
    test = config.test(name)
    return None if test is None else detail_document(test, runtime.oracle_verdicts())


def _not_found() -> Response:
    return error_response(404, "test_not_found", "no test of that name in the oracle configuration")


@app.get("/tests/<name>")
def get_test(name: str) -> Response:
    document = _test_document(name)
    return _not_found() if document is None else json_response(200, document)


@app.get("/tests/<name>/report")
def get_test_report(name: str) -> Response:
    document = _test_document(name)
    if document is None:
        return _not_found()
    from flagbridge.oracle.report_html import html_report  # only this route renders: kept off the cold start

    page = html_report([document])
    return Response(200, "text/html; charset=utf-8", page, headers={"Cache-Control": "no-store"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)


runtime.init_complete(reads_configuration=True)
