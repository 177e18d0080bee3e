"""The tester registry: testers registered at run time, for a while, shared by both directions.

:mod:`flagbridge.testers.registry` holds the domain (validation, the service, the store interface and its
in-memory twin); :mod:`flagbridge.testers.store` the DynamoDB adapter. The CDP router and the impressions
processor ask the registry in bulk, once per SQS batch; the testers API and ``flagbridge testers`` write it.
"""
