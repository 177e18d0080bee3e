"""The cold-start figures: each handler imported from the *built artifact*, as Lambda runs it, against ``import boto3``.

What is measured (full run), with :mod:`local.artifact`:

* the layer built by ``layers/shared/Makefile`` (as ``sam build`` runs it; for this host's platform so that its
  native modules load, every ``.py``/``.pyc`` identical to the arm64 build) and each function directory (as
  SAM packages it: SkipBuild, the source directory), both zipped ``sam package``-style (entries dated 1980-01-01) and
  extracted with those dates;
* in CPython 3.13 when one exists (3.11 otherwise, said in the title), run as ``python -I -S -B``: no
  ``PYTHON*`` variables, no site, no bytecode written, so nothing is cached between runs, as on Lambda's
  read-only /opt; ``sys.path`` is Lambda's: function dir, layer, then the runtime's boto3 site (precompiled);
* the floor: ``import boto3`` from that site alone, run right before each handler import (interleaved pairs,
  the order shuffled each round); medians over ``cold_runs`` rounds after a warm-up round;
* and how many layer modules each handler compiled from source at import (target 0: the layer's bytecode is
  used; without it each cold start compiled 160-280 modules).

Smoke runs (``--smoke``) probe the source tree with the development virtualenv, once: structure only.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import statistics
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from local import artifact
from local.artifact import FUNCTIONS
from local.bench.timing import LAYER_DIR, ROOT, SHARED, SMOKE, Figure, Sizes, _ms, at_most, pair_ratios, quartiles

WORK = ROOT / "build" / "bench-artifact"
# What every function imports besides its own code, in import order (each stage timed after the previous
# ones, in one fresh interpreter, the collector off after boto3 as in the handlers): where the cold-start
# time over ``import boto3`` goes.
SHARED_IMPORT_STAGES = (
    ("boto3", "boto3"),
    ("pydantic and the configuration models", "flagbridge.config"),
    ("Powertools Logger, Metrics and Tracer (X-Ray SDK)", "flagbridge.observability"),
    ("HTTP routing, flagbridge.routing (HTTP functions)", "flagbridge.api"),
)
# Each stage after boto3 is also a row of its own, ``cold_start.shared.<name>``: its share of ``import boto3``.
SHARED_STAGE_NAMES = {
    "flagbridge.config": "pydantic",
    "flagbridge.observability": "powertools",
    "flagbridge.api": "routing",
}


@dataclass(frozen=True)
class ProbeSite:
    """Where the probes import from: one interpreter, the layer, each function's directory, the runtime's site."""

    executable: str
    version: str
    layer_python: Path  # /opt/python
    config: Path  # /opt/config/flagbridge.json
    task_roots: dict[str, Path]
    runtime: Path
    label: str  # what the probe imports, for the report

    def roots(self, function: str | None) -> dict[str, Path]:
        if function is None:
            return {"runtime": self.runtime}
        return {"function": self.task_roots[function], "layer": self.layer_python, "runtime": self.runtime}

    def environment(self, function: str) -> dict[str, str]:
        return artifact.lambda_environment(function, self.config, self.task_roots[function])


def built_artifact() -> ProbeSite:
    """Build the layer (this host's platform), zip and extract it and the functions as Lambda receives them."""
    executable = artifact.python313() or artifact.base_python()
    version = artifact.interpreter_version(executable)
    shutil.rmtree(WORK, ignore_errors=True)
    artifact.build_layer(WORK / "built", platform_tag=artifact.host_platform())
    layer = artifact.as_deployed(WORK / "built", WORK / "opt")
    task_roots = {name: artifact.as_deployed(artifact.FUNCTIONS_DIR / name, WORK / "task" / name) for name in FUNCTIONS}
    label = f"built layer, py{version}" + ("" if version == "3.13" else " (no 3.13 here: not the runtime's)")
    runtime = artifact.runtime_site(executable)
    return ProbeSite(
        executable, version, layer / "python", layer / "config" / "flagbridge.json", task_roots, runtime, label
    )


def source_tree() -> ProbeSite:
    """Smoke runs: the source tree and the development virtualenv (no build, no install)."""
    executable = artifact.base_python()
    task_roots = {name: artifact.FUNCTIONS_DIR / name for name in FUNCTIONS}
    site = Path(sysconfig.get_paths()["purelib"])
    version = artifact.interpreter_version(executable)
    config = SHARED / "config" / "flagbridge.yaml"
    return ProbeSite(executable, version, SHARED, config, task_roots, site, f"source tree, py{version}")


def python_files_differing_from_sam_build(layer_python: Path) -> list[str] | None:
    """Python files (.py, .pyc) that differ between the probed layer and .aws-sam's arm64 one (None: not built).

    Expected empty; names here mean .aws-sam is older than the sources (``make build`` refreshes it).
    """
    deployed = LAYER_DIR / "python"
    if not deployed.is_dir():
        return None

    def digests(root: Path) -> dict[str, str]:
        return {
            str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in root.rglob("*")
            if path.suffix in (".py", ".pyc") and path.is_file()
        }

    ours, theirs = digests(layer_python), digests(deployed)
    return sorted(name for name in ours.keys() | theirs.keys() if ours.get(name) != theirs.get(name))


def figure_cold_start(sizes: Sizes) -> list[Figure]:
    """Import time of every handler module in fresh interpreters, each right after an ``import boto3``."""
    smoke = sizes == SMOKE
    site = source_tree() if smoke else built_artifact()
    floors: dict[str, list[float]] = {name: [] for name in FUNCTIONS}
    samples: dict[str, list[float]] = {name: [] for name in FUNCTIONS}
    rss: dict[str, list[int]] = {name: [] for name in FUNCTIONS}
    floor_rss: list[int] = []
    compiled: dict[str, list[int]] = {name: [] for name in FUNCTIONS}
    from_bytecode: dict[str, list[int]] = {name: [] for name in FUNCTIONS}
    stage_samples: list[list[float]] = []
    stage_rss: list[int] = []
    shuffler = random.Random(13)
    for round_number in range(sizes.warmup + sizes.cold_runs):
        order = list(FUNCTIONS)
        shuffler.shuffle(order)
        for function in order:  # a floor right before every handler: the machine's pace changes within a round
            env, cwd = site.environment(function), site.task_roots[function]
            floor = artifact.probe_imports(site.executable, ["boto3"], site.roots(None), cwd=cwd, env=env)
            probe = artifact.probe_imports(site.executable, [function], site.roots(function), cwd=cwd, env=env)
            if round_number >= sizes.warmup:
                floors[function].append(floor.seconds[0])
                floor_rss.append(floor.rss_kb)
                samples[function].append(probe.seconds[0])
                rss[function].append(probe.rss_kb)
                compiled[function].append(probe.compiled.get("layer", 0))
                from_bytecode[function].append(probe.from_bytecode("layer"))
        stages = artifact.probe_imports(
            site.executable,
            [module for _, module in SHARED_IMPORT_STAGES],
            site.roots("impressions_processor"),
            cwd=site.task_roots["impressions_processor"],
            env=site.environment("impressions_processor"),
            collector_off_after_first=True,
        )
        if round_number >= sizes.warmup:
            stage_samples.append(stages.seconds)
            stage_rss.append(stages.rss_kb)
    figures = _shared_imports_figures(stage_samples, site.label, round(max(stage_rss) / 1024, 1))
    differing = None if smoke else python_files_differing_from_sam_build(site.layer_python)
    for function in FUNCTIONS:
        measured_s, floor_s = statistics.median(samples[function]), statistics.median(floors[function])
        pair_ratios = sorted(m / f for m, f in zip(samples[function], floors[function], strict=True))
        ratio = statistics.median(pair_ratios)
        layer_compiled = max(compiled[function])
        passed = _cold_start_passes(pair_ratios, layer_compiled, smoke)
        figure = Figure(
            f"cold_start.{function}",
            f"cold start {function} ({site.label}, {layer_compiled} layer modules compiled)",
            round(measured_s * 1000, 1),
            round(floor_s * 1000, 1),
            round(ratio, 2),
            "ms",
            "<= 1.35x paired median, IQR top <= 1.5x, 0 compiled",
            passed,
            {
                "runs_ms": _ms(samples[function]),
                "floor_runs_ms": _ms(floors[function]),
                "pair_ratio_median": round(statistics.median(pair_ratios), 2),
                "pair_ratio_iqr": quartiles(pair_ratios),
                "floor_peak_rss_mb": round(max(floor_rss) / 1024, 1),
                "python": site.version,
                "imports_from": site.label,
                "layer_modules_compiled_from_source": layer_compiled,
                "layer_modules_from_bytecode": min(from_bytecode[function]),
                "layer_python_files_differing_from_sam_build": None if differing is None else len(differing),
                "differing_files_first": None if differing is None else differing[:5],
            },
            ratio_iqr=quartiles(pair_ratios),  # this round-by-round list, computed above
            measured_iqr=quartiles(_ms(samples[function]), 1),
        )
        figure.peak_rss_mb = round(max(rss[function]) / 1024, 1)
        figures.append(figure)
    return figures


def _cold_start_passes(pair_ratios: list[float], layer_compiled: int, smoke: bool) -> bool:
    """The paired median at most 1.35x and the pairs' upper quartile at most 1.5x (a loaded machine must not hide a
    slow import), with no layer module compiled from source (not checked on the smoke run's source tree)."""
    spread = quartiles(pair_ratios) or [0.0, 0.0]
    within = bool(at_most(statistics.median(pair_ratios), 1.35)) and spread[1] <= 1.5
    return within if smoke else within and layer_compiled == 0


def _shared_imports_figures(stage_samples: list[list[float]], label: str, peak_rss_mb: float) -> list[Figure]:
    """Report only: every shared stage after boto3 against ``import boto3`` in the same interpreter, and their sum.

    Each round's stages ran in one interpreter, so each round gives one ratio per stage (its spread).
    """
    columns = [list(column) for column in zip(*stage_samples, strict=True)]
    medians = [statistics.median(column) for column in columns]
    boto3_runs, boto3_s = columns[0], medians[0]
    after_boto3 = [sum(stages[1:]) for stages in stage_samples]
    total = Figure(
        "cold_start.shared",
        f"cold start: shared imports after boto3 ({label})",
        round(sum(medians[1:]) * 1000, 1),
        round(boto3_s * 1000, 1),
        round(sum(medians[1:]) / boto3_s, 2),
        "ms",
        "report",
        None,
        {
            "stages_ms": {
                title: round(seconds * 1000, 1)
                for (title, _), seconds in zip(SHARED_IMPORT_STAGES, medians, strict=True)
            }
        },
        peak_rss_mb,
        ratio_iqr=quartiles(pair_ratios(boto3_runs, after_boto3)),
        measured_iqr=quartiles(_ms(after_boto3), 1),
    )
    stages = [
        Figure(
            f"cold_start.shared.{SHARED_STAGE_NAMES[module]}",
            f"cold start: shared stage {title}",
            round(median * 1000, 1),
            round(boto3_s * 1000, 1),
            round(median / boto3_s, 2),
            "ms",
            "report",
            None,
            {"module": module},
            peak_rss_mb,
            ratio_iqr=quartiles(pair_ratios(boto3_runs, column)),
            measured_iqr=quartiles(_ms(column), 1),
        )
        for (title, module), column, median in zip(SHARED_IMPORT_STAGES[1:], columns[1:], medians[1:], strict=True)
    ]
    return [total, *stages]
