"""flagbridge: the shared library of the Split <-> mParticle test-in-production bridge.

Shipped as the Lambda layer; the handlers in ``functions/`` stay thin and call into this package.
"""

__version__ = "0.1.0"
