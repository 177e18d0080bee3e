"""Tool tests: the local runner's parts, the benchmark's smoke run and the sample-event generator."""
