"""The demo ``make run`` shows: a sample service under test, a traffic plan run as testers, the oracle's verdicts.

:mod:`local.demo.service` is the service (local only, never deployed), :mod:`local.demo.run` the loop against a
running local bridge, ``python -m local.demo`` (``make demo``) the command. See docs/demo.md.
"""
