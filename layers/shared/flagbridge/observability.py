"""One Logger, Tracer and Metrics for the whole package.

Their service name and metrics namespace come from ``POWERTOOLS_SERVICE_NAME`` and
``POWERTOOLS_METRICS_NAMESPACE``, which ``template.yaml``'s ``Globals`` set for every function (the local
runner reads them from there; tests and the bench set them too). Nothing here repeats those values: an
explicit argument would silently win over the template's.

Logs never carry user keys, emails, IPs or attribute values: log counts, ids we generate and reasons.
"""

from __future__ import annotations

import logging

from aws_lambda_powertools import Logger, Metrics, Tracer

# The SDK and HTTP libraries log whole request bodies (identities, attributes) at DEBUG. A DEBUG log level
# for the functions (LogLevel / Lambda's ApplicationLogLevel) must never turn that on.
for _noisy in ("botocore", "boto3", "s3transfer", "urllib3"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

logger = Logger()
# Only the modules the functions use: AWS calls (botocore) and outbound HTTP (http.client, under urllib3);
# patching every supported library would import each of them at cold start.
tracer = Tracer(patch_modules=("botocore", "httplib"))
metrics = Metrics()
NAMESPACE = metrics.namespace
"""The namespace of the dimensioned metrics the handlers emit with ``single_metric``."""
