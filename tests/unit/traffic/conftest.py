"""Shared fixtures for the traffic generator's unit tests: the example plans and model, a tester pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from flagbridge.traffic.generator import Target, TrafficGenerator
from flagbridge.traffic.model import RequestModel, Tester, load_model
from flagbridge.traffic.plan import TrafficPlan, load_plan
from flagbridge.traffic.safety import RunTag

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "traffic"
TESTERS = (Tester("qa-bot-01", "qa-bot-01@qa.example.com"), Tester("qa-bot-02", "qa-bot-02@qa.example.com"))
RUN_TAG = RunTag(b"unit-test-run-tag-key")
CLOCK_MS = 1_767_225_600_000


@pytest.fixture(scope="session")
def model() -> RequestModel:
    return load_model(EXAMPLES / "mparticle-model.yaml")


@pytest.fixture(scope="session")
def published_plan() -> TrafficPlan:
    return load_plan(EXAMPLES / "published-plan.xml")[0]


@pytest.fixture(scope="session")
def body_plan() -> TrafficPlan:
    return load_plan(EXAMPLES / "mparticle-plan.yaml")[0]


def make_generator(plan: TrafficPlan, model: RequestModel, seed: int = 7, run_id: str = "run-unit") -> TrafficGenerator:
    return TrafficGenerator(
        plan,
        model,
        TESTERS,
        seed=seed,
        run_id=run_id,
        clock_ms=CLOCK_MS,
        target=Target.parse("http://127.0.0.1:8080"),
        run_tag=RUN_TAG,
    )
