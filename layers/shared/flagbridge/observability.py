"""One Logger, Tracer and Metrics for the whole package (service name from POWERTOOLS_SERVICE_NAME).

Logs never carry user keys, emails, IPs or attribute values: log counts, ids we generate and reasons.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

NAMESPACE = "Flagbridge"

logger = Logger(service="flagbridge")
# Only the modules the functions use: AWS calls (botocore) and outbound HTTP (http.client, under urllib3);
# patching every supported library would import each of them at cold start.
tracer = Tracer(service="flagbridge", patch_modules=("botocore", "httplib"))
metrics = Metrics(namespace=NAMESPACE, service="flagbridge")
