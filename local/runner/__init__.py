"""Run the whole bridge locally, without Docker or AWS: ``make run`` (``python -m local.runner``).

What it does, all driven by ``template.yaml`` (see :mod:`local.resources`):

1. AWS: starts moto's ``ThreadedMotoServer`` in process on 127.0.0.1 (port ``MOTO_PORT`` or a free one) with fake
   credentials, unless ``AWS_ENDPOINT_URL`` is already set (a moto server, LocalStack or AWS): then it uses that.
2. Creates the template's tables, queues, buckets, secrets, topics, event buses and Firehose streams (idempotent).
3. Sets the union of the functions' resolved environments in ``os.environ`` (``FLAGBRIDGE_CONFIG``: the variable
   if set, else ``layers/shared/config/flagbridge.yaml``), puts the template's layers on ``sys.path`` and imports
   every function's handler module.
4. Serves every ``HttpApi`` route on ``http://127.0.0.1:${PORT:-3000}`` like API Gateway (payload format 2.0):
   404 ``{"message":"Not Found"}`` for unknown routes, 500 ``{"message":"Internal Server Error"}`` when a
   handler raises, 413 above 10 MB, JSON for any method or malformed request. ``GET /_local/idle`` (local only)
   answers ``{"idle": true|false}``; ``GET /openapi.json`` the routes' description (docs/api.md).
5. Polls every ``SQS`` event source like a Lambda event source mapping: batches of up to ``BatchSize`` messages
   (several receives of at most 10 within ``MaximumBatchingWindowInSeconds``, and under Lambda's 6 MB payload;
   locally a batch also ends as soon as the queue has nothing more, where Lambda would wait out the window),
   partial batch responses honoured, failed messages retried after ``FLAGBRIDGE_LOCAL_RETRY_SECONDS``
   (default 2) and dead-lettered by the queue's RedrivePolicy.
6. Replays ``events/payloads/split_impressions.json`` once (``FLAGBRIDGE_NO_REPLAY=1`` or ``--no-replay`` skips
   it), prints a summary with URLs, profiles and curl examples, and serves until Ctrl-C / SIGTERM.

Invocations run one at a time (``FLAGBRIDGE_LOCAL_CONCURRENCY=function``: one at a time per function, like one
warm container each): module-level state in handlers (a Powertools resolver's ``current_event``, the shared
Logger's Lambda context keys) is not thread-safe. Outside services named by URL parameters (Split's Events API,
webhooks) are replaced by :class:`local.receivers.Receiver` (``GET /_local/receivers`` shows what they got).
Tests use :class:`LocalBridge` in process or run this module as a subprocess and poll ``/_local/idle``.

Modules: :mod:`~local.runner.bridge` (:class:`LocalBridge`, the replay and the summary), :mod:`~local.runner.invoke`
(handlers imported and called as Lambda does), :mod:`~local.runner.routes`, :mod:`~local.runner.http_api` (the API
Gateway front), :mod:`~local.runner.sqs` (event source mappings), :mod:`~local.runner.moto_patches`;
``__main__`` is the command.
"""

from local.runner.bridge import LocalBridge
from local.runner.sqs import LAMBDA_PAYLOAD_BYTES, SqsPoller

__all__ = ["LAMBDA_PAYLOAD_BYTES", "LocalBridge", "SqsPoller"]
