"""Traffic-plan figures: generator CPU per request against sending it, and 100,000 cases without sending.

``traffic_cpu``: CPU time of the generator per request (build from the model, mutate by the published plan,
record the manifest line) against the CPU time of sending the same request *unmutated* with the same HTTP
client (:class:`flagbridge.traffic.sender.HttpSender`, kept-alive connection) to a local server
(:class:`local.traffic_target.TrafficTarget`, not recording). Both are measured with ``time.thread_time`` in
the calling thread, so the server's own thread is not counted. Target: <= 1.5x.

``traffic_generate``: 100,000 cases generated and written to an NDJSON manifest file, nothing sent: cases/s,
peak memory, and the resident memory growth between the first 10% and the end (the manifest streams, so it
must not grow with the run). Target: growth <= 5 MB.
"""

from __future__ import annotations

import io
import itertools
import tempfile
import time
from pathlib import Path

from local.bench.timing import ROOT, Figure, Sizes, _ms, at_most, pair_ratios, paired_medians, peak_rss_mb, quartiles

EXAMPLES = ROOT / "examples" / "traffic"


def _generator(target_url: str) -> object:
    from flagbridge.traffic.generator import Target, TrafficGenerator
    from flagbridge.traffic.model import Tester, load_model
    from flagbridge.traffic.plan import load_plan
    from flagbridge.traffic.safety import RunTag

    plan = load_plan(EXAMPLES / "published-plan.xml")[0]
    model = load_model(EXAMPLES / "mparticle-model.yaml")
    testers = [Tester("qa-bot-01", "qa-bot-01@qa.example.com"), Tester("qa-bot-02", "qa-bot-02@qa.example.com")]
    return TrafficGenerator(
        plan, model, testers, seed=1, run_id="bench", clock_ms=1_767_225_600_000,
        target=Target.parse(target_url), run_tag=RunTag(b"bench-key"),
    )  # fmt: skip


def figure_traffic_cpu(sizes: Sizes) -> list[Figure]:
    from flagbridge.traffic.generator import TrafficGenerator
    from flagbridge.traffic.manifest import ManifestWriter, case_record
    from flagbridge.traffic.sender import HttpSender
    from local.traffic_target import TrafficTarget

    target = TrafficTarget(record=False).start()
    try:
        generator = _generator(target.url)
        assert isinstance(generator, TrafficGenerator)
        count = sizes.traffic_requests
        requests = [generator.unmutated(index).request for index in range(count)]
        sender = HttpSender()
        statuses: dict[int, int] = {}

        def floor() -> None:
            for request in requests:
                outcome = sender.send(request)
                statuses[outcome.status or 0] = statuses.get(outcome.status or 0, 0) + 1

        def measured() -> None:
            writer = ManifestWriter(io.StringIO())
            for index in range(count):
                writer.write(case_record(generator.case(index), None))

        floor_s, measured_s, floors, measures = paired_medians(
            floor, measured, sizes.runs, sizes.warmup, clock=time.thread_time
        )
        sender.close()
    finally:
        target.stop()
    ratio = measured_s / floor_s
    return [
        Figure(
            "traffic_cpu",
            "traffic generator CPU per request (build + mutate + record)",
            round(measured_s / count * 1e6, 1),
            round(floor_s / count * 1e6, 1),
            round(ratio, 2),
            "us/request",
            "<= 1.5x",
            at_most(ratio, 1.5),
            {
                "requests": count,
                "plan": "published-plan.xml",
                "floor": "HttpSender.send of the unmutated request to a local server (thread CPU)",
                "floor_statuses": statuses,
                "floor_runs_ms": _ms(floors),
                "measured_runs_ms": _ms(measures),
            },
            ratio_iqr=quartiles(pair_ratios(floors, measures)),
            measured_iqr=quartiles((m / count * 1e6 for m in measures), 1),
        )
    ]


def _resident_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    import resource

    return round(pages * resource.getpagesize() / (1024 * 1024), 1)


def figure_traffic_generate(sizes: Sizes) -> list[Figure]:
    from flagbridge.traffic.generator import TrafficGenerator
    from flagbridge.traffic.manifest import ManifestWriter, case_record

    generator = _generator("http://127.0.0.1:9")
    assert isinstance(generator, TrafficGenerator)
    total = sizes.traffic_cases
    early = max(1, total // 10)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "manifest.ndjson"
        with path.open("w", encoding="utf-8") as stream:
            writer = ManifestWriter(stream)
            started = time.perf_counter()
            resident_early = 0.0
            mutations = 0
            tenths = [started]  # the spread: the rate of each tenth of the cases
            for index in range(total):
                case = generator.case(index)
                mutations += len(case.mutations)
                writer.write(case_record(case, None))
                if index + 1 == early:
                    resident_early = _resident_mb()
                if (index + 1) % early == 0:
                    tenths.append(time.perf_counter())
            elapsed = time.perf_counter() - started
        resident_end = _resident_mb()
        manifest_mb = round(path.stat().st_size / (1024 * 1024), 1)
    growth = round(resident_end - resident_early, 1)
    return [
        Figure(
            "traffic_generate",
            f"traffic: {total:,} cases generated, nothing sent",
            round(total / elapsed),
            None,
            None,
            "cases/s",
            "memory growth <= 5 MB",
            growth <= 5.0,
            {
                "cases": total,
                "mutations": mutations,
                "seconds": round(elapsed, 2),
                "resident_mb_after_10pct": resident_early,
                "resident_mb_at_end": resident_end,
                "growth_mb": growth,
                "peak_rss_mb": peak_rss_mb(),
                "manifest_mb": manifest_mb,
            },
            measured_iqr=quartiles((early / (end - start) for start, end in itertools.pairwise(tenths)), 0),
        )
    ]
