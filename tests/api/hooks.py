"""Schemathesis hooks of tests/api (``SCHEMATHESIS_HOOKS=tests.api.hooks``): a tester's ``expiresAt`` in its window.

The registry takes an expiry in the future and at most 30 days ahead; no static schema can say that, so the copy of
the description under test names the format ``flagbridge-expiry`` and this strategy draws it: epoch seconds (as the
API takes them, digits in a string) between one and twenty days from now.
"""

from __future__ import annotations

import time

import schemathesis
from hypothesis import strategies as st

DAY = 86_400
FORMAT = "flagbridge-expiry"

_now = int(time.time())
schemathesis.openapi.format(FORMAT, st.integers(_now + DAY, _now + 20 * DAY).map(str))
