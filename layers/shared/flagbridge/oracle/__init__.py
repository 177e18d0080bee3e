"""The test oracle: judges each flag treatment's tester cohort from counted events, and acts on a FAIL.

Pure modules: :mod:`.stats` (mixture martingales, binomial tails, SRM evidence, Wilson bounds, chi-square),
:mod:`.histogram` (mergeable log-scale buckets), :mod:`.config` (the ``oracle`` configuration section),
:mod:`.judge` (one verdict per treatment and metric, with its explain line), :mod:`.counting` (lane messages ->
counter deltas).
Adapters: :mod:`.store` (DynamoDB counters and verdict history), :mod:`.split_admin` (Split's kill API).
Services: :mod:`.service` (count a lane batch, evaluate every test, read verdicts for the API).
"""
