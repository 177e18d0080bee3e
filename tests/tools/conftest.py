"""Fixtures of the tools tests: the CDP resources on moto (shared with the handler tests)."""

from tests.handlers.conftest import cdp_aws, receiver  # noqa: F401
