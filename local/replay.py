"""Deprecated alias of the ``flagbridge`` command; it remains for one release.

``python -m local.replay ARGS`` runs ``flagbridge ARGS`` (``dlq list|show|redrive``, ``quarantine list|replay``,
same options). The command is installed by ``make venv`` (or ``pip install .``); see ``docs/cli.md``.
"""

from __future__ import annotations

import sys

from flagbridge_ops.__main__ import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.stderr.write("note: `python -m local.replay` is now the `flagbridge` command; this alias will go\n")
    sys.exit(main())
