"""End-to-end tests: the local runner (``python -m local.runner``) as a subprocess, driven over real HTTP."""
