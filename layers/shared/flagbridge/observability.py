"""One Logger, Tracer and Metrics for the whole package (service name from POWERTOOLS_SERVICE_NAME).

Logs never carry user keys, emails, IPs or attribute values: log counts, ids we generate and reasons.
"""

from __future__ import annotations

import logging

from aws_lambda_powertools import Logger, Metrics, Tracer

NAMESPACE = "Flagbridge"

# The SDK and HTTP libraries log whole request bodies (identities, attributes) at DEBUG. A DEBUG log level
# for the functions (LogLevel / Lambda's ApplicationLogLevel) must never turn that on.
for _noisy in ("botocore", "boto3", "s3transfer", "urllib3"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

logger = Logger(service="flagbridge")
# Only the modules the functions use: AWS calls (botocore) and outbound HTTP (http.client, under urllib3);
# patching every supported library would import each of them at cold start.
tracer = Tracer(service="flagbridge", patch_modules=("botocore", "httplib"))
metrics = Metrics(namespace=NAMESPACE, service="flagbridge")
