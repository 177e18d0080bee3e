"""Tool tests: the local runner's parts and output, the benchmark's smoke run, the sample-event generator and the
``flagbridge`` command (on moto, against the local runner, and as an installed wheel)."""
