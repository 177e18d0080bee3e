"""flagbridge's operator tooling: the ``flagbridge`` command (installed with ``pip install .``).

It operates a *deployed* stack (or the local runner): it never ships in the Lambda layer, and it uses the layer
package (``flagbridge``) for what a replay must do exactly as the functions do (ingest, routing, envelopes).

Layout
    ``__main__``     ``main()``: builds the parser, runs a command, one line on stderr per failure, exit status
    ``cli``          what commands share: ``Context``, the global options, ``add_group`` / ``add_command`` /
                     ``group_actions`` (add an action to an existing group), the exit codes
    ``commands/``    one module per top-level command (``dlq``, ``quarantine``, ``testers``, ``traffic``,
                     ``verdict``; ``traffic`` is a package, its ``aws`` module adds ``traffic status`` and
                     ``traffic stop``): options, printing
    ``resources``    where the stack's queues, bucket and tables are (environment, ``--stack``, flags), clients
    ``local``        ``--local``: everything the commands need from the local runner's ``/_local/aws``
    ``output``       tables, the progress bar, short JSON
    ``errors``       ``CliError`` / ``UsageError`` and the one-line description of any failure
    the work itself, independent of argparse:
    ``dlq``, ``quarantine``, ``replay``   dead-letter queues, the quarantine and its replay
    ``traffic``, ``until_decided``        local traffic runs, ``--until-decided``'s rounds
    ``traffic_aws``                       runs in a deployed stack (``--stack``, ``status``, ``stop``)
    ``verdict``                           the oracle's verdicts: table, JUnit XML, exit status
    ``report``                            the HTML report and the local runner's live page

Adding a command
    Add ``commands/<name>.py`` with ``register(commands)``: call ``add_command(commands, "<name>", handler,
    summary=..., description=..., examples=[...])`` (or ``add_group`` for subcommands), add the command's
    options to the parser it returns, and write ``handler(ctx: Context) -> dict``: print tables to ``ctx.out``
    unless ``ctx.json``, return the result (printed as JSON with ``--json``; an ``"errors"`` list means exit
    status 1, or set ``"exit_status"`` to exit like ``flagbridge verdict``), raise ``CliError`` for a problem the
    user can fix. Import heavy modules inside the handler.
    Every module in ``commands/`` is registered; nothing else needs editing. See ``docs/cli.md``.
"""
