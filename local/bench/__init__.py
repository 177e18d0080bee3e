"""Performance benchmark: ``make bench`` (``python -m local.bench``).

Every figure is a ratio against a *floor measured in the same run*, so the noise of a shared machine
mostly cancels out. Timed figures take the median of several runs after a warm-up, floor and measured
runs interleaved, and report their spread over the rounds (``ratio_iqr``, ``measured_iqr``: the IQR).
Each figure runs in its own subprocess (fresh interpreter, no state shared with the others) that also
reports its peak memory (``ru_maxrss``).

=====================  ========================================================  =================================
figure                 measured                                                  floor / target
=====================  ========================================================  =================================
``ingest_cpu``         ``impressions_webhook.lambda_handler`` CPU time for a      ``json.loads(gzip.decompress(b))``
                       gzipped 10,000-impression body (decode, validate, chunk,   of the same bytes; <= 3x
                       enqueue to an in-memory sender)
``profile_writes``     DynamoDB write requests per SQS batch (real                distinct (user, flag) pairs of
                       ``DynamoDBProfileStore`` on a counting fake client)        the batch; = 1.0
``processor_cpu``      ``impressions_processor.lambda_handler`` CPU time per      the ingest floor, per impression;
                       impression, store calls faked                              <= 3x
``cold_start.<fn>``    import time of each handler from the built artifact (layer  ``import boto3`` alone; <= 1.5x,
                       and function zipped as ``sam package`` does), CPython      0 layer modules compiled
                       3.13 ``-I -S -B``, Lambda's ``sys.path`` with the
                       runtime's boto3 (see :mod:`~local.bench.cold_start`)
``cold_start.shared``  what every function imports after boto3, stage by stage    report only
                       (pydantic + config models, Powertools, HTTP routing);
                       ``cold_start.shared.<stage>`` each stage's share
``router_cpu``         events/s through ``route_batch`` (plan validation,         ``json.loads`` of the same
                       tester resolution, filters, 5 destinations)             batches; <= 4x
``split_requests``     HTTP requests the real ``DeliveryService`` makes for N     max(ceil(N / 5000), bytes / 1 MB);
                       Split events delivered together (fake HTTP client)         = 1.0, every body < 1 MB
``split_requests.lane``  the same N events as the router writes them (3 per       that floor summed per SQS batch
                       message), in SQS batches of the Split lane's               (a request cannot span two
                       ``BatchSize`` (template.yaml)                              invocations); = 1.0, < 1 MB
``registry_requests``  testers-table requests per SQS batch of the router and     ceil(distinct users / 100) per
                       (``.processor``) the processor (real adapters on a         batch; = 1.0 (no request per
                       counting fake client, half the users registered)           event)
``oracle_cpu``         ``oracle_counter.lambda_handler`` CPU time per event        ``json.loads`` of the same lane
                       (lane messages of 5 events, SQS batches of 100)           messages; <= 3x
``oracle_writes``      DynamoDB write requests per oracle-lane SQS batch         distinct counters touched; = 1.0
``oracle_eval``        one evaluation over the counters of 1,000,000 events      the same over 10,000 events;
                       (24 h x 2 treatments x 2 metrics)                         <= 1.5x (cost follows counters)
``oracle_rule``        the same evaluation (1,000,000 events) with the always-   the rule before (Wilson bounds,
                       valid rule                                                 kept in the bench); <= 2x
``local_e2e``          impressions/s from the HTTP POST to the profile being      report only
                       visible, on the local runner (``LocalBridge``, moto)
``layer_size``         unzipped size of the built SharedLayer (arm64)             <= 20 MB, no runtime packages,
                                                                                  hash-based 3.13 bytecode
``traffic_cpu``        traffic generator CPU per request: build, mutate by the    sending the same request unmutated
                       published plan, record the manifest line                   with the same client to a local
                                                                                  server (thread CPU); <= 1.5x
``traffic_generate``   100,000 cases to a manifest file, nothing sent: cases/s,   memory growth <= 5 MB
                       resident memory after 10% and at the end
``runs_worker``        requests/s one test-run shard worker sustains (claim,      the same HttpSender's plain loop
                       progress per case, manifest) against a local server        over the same cases; >= 0.7x
``runs_sqs_requests``  SendMessageBatch calls to enqueue a run of N shards        ceil(N / 10); = 1.0
=====================  ========================================================  =================================

Usage::

    python -m local.bench                  # full run: table on stdout, report in build/bench.json
    python -m local.bench --smoke          # tiny inputs, a few seconds (part of `make test`)
    python -m local.bench --only ingest_cpu --only router_cpu
    python -m local.bench --figure ingest_cpu --result out.json   # one figure in this process (internal)

Modules: :mod:`~local.bench.timing` (sizes, the report line, paired timing), :mod:`~local.bench.fakes`
(inputs and in-memory fakes), :mod:`~local.bench.figures`, :mod:`~local.bench.registry` (the tester registry),
:mod:`~local.bench.cold_start`, :mod:`~local.bench.traffic`, :mod:`~local.bench.orchestration` (one subprocess per
figure, the report).

The exit status is 1 when a target is missed (0 in ``--smoke`` mode, where figures are not meaningful).
"""

from local.bench.cold_start import FUNCTIONS, SHARED_IMPORT_STAGES, SHARED_STAGE_NAMES
from local.bench.orchestration import FIGURES, main, run, table
from local.bench.timing import FULL, SMOKE, Figure, Sizes

__all__ = [
    "FIGURES",
    "FULL",
    "FUNCTIONS",
    "SHARED_IMPORT_STAGES",
    "SHARED_STAGE_NAMES",
    "SMOKE",
    "Figure",
    "Sizes",
    "main",
    "run",
    "table",
]
