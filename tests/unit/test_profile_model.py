"""The exposure merge: duplicates, out-of-order delivery, bounds, and order independence."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flagbridge.config import ProfilesConfig
from flagbridge.impressions.models import QueuedImpression
from flagbridge.profiles.model import DAY_MS, fingerprint, merge_impressions

CONFIG = ProfilesConfig()
T0 = 1767225600000


def imp(
    time: int, treatment: str = "on", version: int | None = 1, label: str | None = "default rule"
) -> QueuedImpression:
    return QueuedImpression(
        key="u-1",
        flag="flag_a",
        treatment=treatment,
        time=time,
        label=label,
        version=version,
        environment="Production",
        environment_id="env-1",
        traffic_type="user",
        identity_type="customer_id",
    )


def merge_all(batches):
    state = None
    for batch in batches:
        state = merge_impressions(state, batch, CONFIG, now_ms=0).state
    return state


def test_newest_wins_even_when_it_arrives_first() -> None:
    state = merge_all([[imp(T0 + 10, "off", 2)], [imp(T0, "on", 1)]])
    assert state is not None
    assert (state.treatment, state.version, state.current_time) == ("off", 2, T0 + 10)
    assert (state.first_seen, state.last_seen, state.exposures) == (T0, T0 + 10, 2)


def test_same_time_ties_break_on_flag_version() -> None:
    state = merge_all([[imp(T0, "v2", 2)], [imp(T0, "v1", 1)]])
    assert state is not None and state.treatment == "v2"


def test_duplicates_are_not_counted_and_do_not_change_the_state() -> None:
    first = merge_impressions(None, [imp(T0), imp(T0)], CONFIG, now_ms=1).state
    assert first is not None and first.exposures == 1
    again = merge_impressions(first, [imp(T0)], CONFIG, now_ms=2)
    assert not again.changed and again.state == first and again.duplicates == 1


def test_history_is_bounded_and_keeps_the_most_recent_assignments() -> None:
    config = ProfilesConfig(assignment_history_size=3)
    state = None
    for i in range(6):
        state = merge_impressions(state, [imp(T0 + i, f"t{i}")], config, now_ms=0).state
    assert state is not None
    assert [a.treatment for a in state.assignments] == ["t3", "t4", "t5"]
    assert state.exposures == 6


def test_fingerprints_outside_the_window_are_pruned() -> None:
    config = ProfilesConfig(dedup_window_days=1, dedup_max_entries=10)
    state = merge_impressions(None, [imp(T0)], config, now_ms=0).state
    state = merge_impressions(state, [imp(T0 + 2 * DAY_MS)], config, now_ms=0).state
    assert state is not None
    assert fingerprint(imp(T0)) not in state.seen
    assert state.seen_floor == T0
    capped = merge_impressions(None, [imp(T0 + i) for i in range(15)], config, now_ms=0).state
    assert capped is not None and len(capped.seen) == 10 and capped.seen_floor == T0 + 4


impressions = st.lists(
    st.builds(
        imp,
        time=st.integers(T0, T0 + 50),
        treatment=st.sampled_from(["on", "off", "control"]),
        version=st.sampled_from([1, 2, None]),
        label=st.sampled_from(["default rule", "whitelisted", None]),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(items=impressions, data=st.data())
def test_result_is_independent_of_order_batching_and_redelivery(items, data) -> None:
    reference = merge_all([items])
    shuffled = data.draw(st.permutations(items))
    cut = data.draw(st.integers(0, len(shuffled)))
    redelivered = data.draw(st.lists(st.sampled_from(items), max_size=10))
    other = merge_all([shuffled[:cut], redelivered, shuffled[cut:], items])
    assert reference is not None and other is not None
    assert other.exposures == reference.exposures == len({fingerprint(i) for i in items})
    assert (other.treatment, other.version, other.label, other.current_time) == (
        reference.treatment,
        reference.version,
        reference.label,
        reference.current_time,
    )
    assert (other.first_seen, other.last_seen) == (reference.first_seen, reference.last_seen)
    assert sorted(other.assignments, key=repr) == sorted(reference.assignments, key=repr)
