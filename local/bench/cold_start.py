"""The cold-start figures: each handler module imported in many fresh interpreters with only what Lambda
provides on ``sys.path``, against ``import boto3`` alone."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from local.bench.timing import CONFIG_PATH, ROOT, SHARED, SMOKE, Figure, Sizes, _ms, at_most

PYCACHE = ROOT / "build" / "bench-pycache"
LAMBDA_SITES = ROOT / "build" / "bench-lambda-site"
FUNCTIONS = (
    "impressions_webhook",
    "impressions_processor",
    "mparticle_ingest",
    "cdp_router",
    "destination_delivery",
    "profile_api",
    "tester_registry",
)


# CPU time (user + system, file reads included): on a shared machine wall time also counts the moments
# another process had the CPU, which moved single runs by 50%.
_IMPORT_PROBE = """
import gc, importlib, json, resource, time
seconds = []
for index, module in enumerate({modules!r}):
    if index and {collector_off_after_first!r}:
        gc.disable()  # as the handlers import (flagbridge.runtime.init_complete)
    started = time.process_time()
    importlib.import_module(module)
    seconds.append(time.process_time() - started)
print("BENCH " + json.dumps({{"seconds": seconds, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""
# What every function imports besides its own code, in import order (each stage timed after the previous
# ones, in one fresh interpreter, the collector off after boto3 as in the handlers): where the cold-start
# time over ``import boto3`` goes.
SHARED_IMPORT_STAGES = (
    ("boto3", "boto3"),
    ("pydantic and the configuration models", "flagbridge.settings"),
    ("Powertools Logger, Metrics and Tracer (X-Ray SDK)", "flagbridge.observability"),
    ("Powertools event handler (HTTP functions)", "aws_lambda_powertools.event_handler"),
)


@dataclass(frozen=True)
class ProbeInterpreter:
    """The interpreter and third-party packages the cold-start probes import with.

    ``site`` holds only what Lambda provides: boto3 and its dependencies (the runtime's) and the layer's
    requirements. The development virtualenv is not used: it also holds moto, the SAM CLI and their
    dependencies (awscrt, pyOpenSSL), which botocore imports when they are installed; that would add about
    70 ms to ``import boto3`` that Lambda never pays, and flatter every ratio. ``site`` None (smoke runs):
    the bench's own environment, which needs no install.
    """

    executable: str
    version: str
    site: Path | None

    def python_path(self, *entries: Path) -> list[str]:
        return [str(entry) for entry in entries] + ([str(self.site)] if self.site else [])


def _interpreter_version(executable: str) -> str:
    completed = subprocess.run(
        [executable, "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return completed.stdout.strip()


def runtime_boto3_requirement() -> str:
    """boto3 as pinned for development (the functions are tested against it)."""
    for line in (ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("boto3=="):
            return line.strip()
    return "boto3"


def lambda_site(version: str) -> Path:
    """``build/bench-lambda-site/<python>-<hash>``: boto3 and the layer's requirements for this host, installed once."""
    requirements = SHARED / "requirements.txt"
    boto3 = runtime_boto3_requirement()
    key = hashlib.sha256((boto3 + "\n" + requirements.read_text(encoding="utf-8")).encode()).hexdigest()[:12]
    site = LAMBDA_SITES / f"{version}-{key}"
    if site.is_dir():
        return site
    machine = platform.machine()
    platforms = [f"manylinux2014_{machine}", f"manylinux_2_28_{machine}", f"manylinux_2_34_{machine}"]
    LAMBDA_SITES.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="installing-", dir=LAMBDA_SITES))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    command += ["--no-warn-conflicts", "--target", str(staging), "--python-version", version, "--implementation", "cp"]
    command += ["--only-binary=:all:"] + [option for tag in platforms for option in ("--platform", tag)]
    command += [boto3, "-r", str(requirements)]
    subprocess.run(command, check=True, timeout=600)
    staging.rename(site)
    return site


def probe_interpreter(smoke: bool) -> ProbeInterpreter:
    """The probes' interpreter: ``FLAGBRIDGE_BENCH_PYTHON`` (e.g. a python3.13, as in Lambda), else this one."""
    if smoke:
        return ProbeInterpreter(sys.executable, _interpreter_version(sys.executable), None)
    # Outside the virtualenv (its site-packages would be on sys.path); -S keeps even the base one off it.
    executable = os.environ.get("FLAGBRIDGE_BENCH_PYTHON") or str(getattr(sys, "_base_executable", sys.executable))
    version = _interpreter_version(executable)
    return ProbeInterpreter(executable, version, lambda_site(version))


def lambda_environment(function: str | None, interpreter: ProbeInterpreter | None = None) -> dict[str, str]:
    """A Lambda-like environment: the function dir and the layer on sys.path, tracing on, no bytecode in the repo."""
    task_root = ROOT / "functions" / (function or "impressions_webhook")
    entries = [task_root, SHARED] if function else []
    paths = interpreter.python_path(*entries) if interpreter else [str(entry) for entry in entries]
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": os.pathsep.join(paths),
        "PYTHONPYCACHEPREFIX": str(PYCACHE),
        "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_LAMBDA_FUNCTION_NAME": f"flagbridge-{function or 'floor'}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_SERVICE_NAME": "flagbridge",
        "POWERTOOLS_METRICS_NAMESPACE": "Flagbridge",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "FLAGBRIDGE_CONFIG": str(CONFIG_PATH),
    }


def time_imports(
    modules: Sequence[str],
    function: str | None,
    interpreter: ProbeInterpreter,
    collector_off_after_first: bool = False,
) -> tuple[list[float], int]:
    """CPU seconds to import each of ``modules`` in turn in a fresh interpreter, and its peak RSS (KiB)."""
    no_site = [] if interpreter.site is None else ["-S"]
    completed = subprocess.run(
        [
            interpreter.executable,
            *no_site,
            "-c",
            _IMPORT_PROBE.format(modules=list(modules), collector_off_after_first=collector_off_after_first),
        ],
        cwd=str(ROOT / "functions" / function) if function else str(ROOT),
        env=lambda_environment(function, interpreter),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("BENCH ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"importing {', '.join(modules)} failed:\n{completed.stderr[-2000:]}")
    probe = json.loads(lines[-1][len("BENCH ") :])
    return [float(seconds) for seconds in probe["seconds"]], int(probe["rss_kb"])


def time_import(module: str, function: str | None, interpreter: ProbeInterpreter) -> tuple[float, int]:
    """Seconds to import ``module`` in a fresh interpreter, and that interpreter's peak RSS (KiB)."""
    (seconds,), kib = time_imports([module], function, interpreter)
    return seconds, kib


def figure_cold_start(sizes: Sizes) -> list[Figure]:
    """Import time of every handler module in fresh interpreters, against ``import boto3`` alone."""
    PYCACHE.mkdir(parents=True, exist_ok=True)
    interpreter = probe_interpreter(smoke=sizes == SMOKE)
    floors: list[float] = []
    floor_rss: list[int] = []
    samples: dict[str, list[float]] = {name: [] for name in FUNCTIONS}
    rss: dict[str, list[int]] = {name: [] for name in FUNCTIONS}
    stage_samples: list[list[float]] = []
    stage_rss: list[int] = []
    for round_number in range(sizes.warmup + sizes.cold_runs):  # round 0 compiles bytecode into build/
        for function in FUNCTIONS:  # a floor next to every function: the machine's pace changes within a round
            floor_seconds, floor_kib = time_import("boto3", None, interpreter)
            seconds, kib = time_import(function, function, interpreter)
            if round_number >= sizes.warmup:
                floors.append(floor_seconds)
                floor_rss.append(floor_kib)
                samples[function].append(seconds)
                rss[function].append(kib)
        modules = [module for _, module in SHARED_IMPORT_STAGES]
        stages, kib = time_imports(modules, "impressions_processor", interpreter, collector_off_after_first=True)
        if round_number >= sizes.warmup:
            stage_samples.append(stages)
            stage_rss.append(kib)
    floor_s = statistics.median(floors)
    figures = [_shared_imports_figure(stage_samples)]
    figures[0].peak_rss_mb = round(max(stage_rss) / 1024, 1)
    for function in FUNCTIONS:
        measured_s = statistics.median(samples[function])
        ratio = measured_s / floor_s
        figure = Figure(
            f"cold_start.{function}",
            f"cold start {function}",
            round(measured_s * 1000, 1),
            round(floor_s * 1000, 1),
            round(ratio, 2),
            "ms",
            "<= 1.5x",
            at_most(ratio, 1.5),
            {
                "runs_ms": _ms(samples[function]),
                "floor_runs_ms": _ms(floors),
                "floor_peak_rss_mb": round(max(floor_rss) / 1024, 1),
                "python": interpreter.version,
                "packages": "boto3 + layer requirements" if interpreter.site else "development virtualenv",
            },
        )
        figure.peak_rss_mb = round(max(rss[function]) / 1024, 1)
        figures.append(figure)
    return figures


def _shared_imports_figure(stage_samples: list[list[float]]) -> Figure:
    """Report only: the median time of each shared import stage, and their sum against ``import boto3``."""
    medians = [statistics.median(column) for column in zip(*stage_samples, strict=True)]
    boto3_s, others = medians[0], medians[1:]
    return Figure(
        "cold_start.shared",
        "cold start: shared imports after boto3",
        round(sum(others) * 1000, 1),
        round(boto3_s * 1000, 1),
        round(sum(others) / boto3_s, 2),
        "ms",
        "report",
        None,
        {
            "stages_ms": {
                title: round(seconds * 1000, 1)
                for (title, _), seconds in zip(SHARED_IMPORT_STAGES, medians, strict=True)
            }
        },
    )
