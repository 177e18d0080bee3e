"""The exposure merge: duplicates, out-of-order delivery, bounds, and order independence."""

from __future__ import annotations

from itertools import permutations

from hypothesis import given, settings
from hypothesis import strategies as st

from flagbridge.config import ProfilesConfig
from flagbridge.impressions.models import QueuedImpression
from flagbridge.profiles.model import DAY_MS, fingerprint, merge_impressions, merge_into, merge_rows

CONFIG = ProfilesConfig()
T0 = 1767225600000


def imp(
    time: int,
    treatment: str = "on",
    version: int | None = 1,
    label: str | None = "default rule",
    environment: tuple[str, str] = ("Production", "env-1"),
) -> QueuedImpression:
    return QueuedImpression(
        key="u-1",
        flag="flag_a",
        treatment=treatment,
        time=time,
        label=label,
        version=version,
        environment=environment[0],
        environment_id=environment[1],
        traffic_type="user",
        identity_type="customer_id",
    )


def merge_all(batches, config: ProfilesConfig = CONFIG):
    state = None
    for batch in batches:
        state = merge_impressions(state, batch, config, now_ms=0).state
    return state


def current(state) -> tuple:
    """What a profile shows as a flag's current exposure."""
    return (state.treatment, state.version, state.label, state.current_time, state.environment, state.environment_id)


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


def test_ties_on_time_are_decided_the_same_way_in_any_order() -> None:
    # Same time: version (none before any version), then treatment, then label (none before any label),
    # then environment id; each merged in every order, in one batch or one by one.
    tied = [
        imp(T0, "on", None, "whitelisted"),
        imp(T0, "on", 0, None),
        imp(T0, "off", 0, "whitelisted"),
        imp(T0, "on", 0, None, environment=("Staging", "env-2")),
        imp(T0, "on", 0, "", environment=("Staging", "env-2")),  # "" is no label: the one before, again
    ]
    for order in permutations(tied):
        for batches in ([list(order)], [[i] for i in order]):
            state = merge_all(batches)
            assert current(state) == ("on", 0, None, T0, "Staging", "env-2"), order
            assert state.exposures == 4
    labels = [imp(T0, "on", 1, "default rule"), imp(T0, "on", 1, None), imp(T0, "on", 1, "")]
    for order in permutations(labels):
        assert merge_all([[i] for i in order]).label == "default rule"  # was: "" or None, the last merged
    environments = [imp(T0, environment=("Staging", "env-2")), imp(T0, environment=("Production", "env-1"))]
    for order in (environments, environments[::-1]):
        state = merge_all([[i] for i in order])  # the assignment's environment: its first exposure's, least on a tie
        assert (state.environment_id, state.assignments[0].environment) == ("env-2", "Production")


# Hypothesis's counterexample (the .hypothesis database of the branch that fixed it): 27 distinct
# assignments at one time, more than the history's 20; which 20 were kept depended on the merge order.
EVERY_ASSIGNMENT = [
    imp(T0, treatment, version, label)
    for treatment in ("on", "off", "control")
    for version in (1, 2, None)
    for label in ("default rule", "whitelisted", None)
]


def test_a_full_history_keeps_the_same_assignments_in_any_order() -> None:
    assert CONFIG.assignment_history_size == 20
    reference = merge_all([EVERY_ASSIGNMENT])
    for order in (EVERY_ASSIGNMENT[::-1], EVERY_ASSIGNMENT[1::2] + EVERY_ASSIGNMENT[::2]):
        for batches in ([order], [[i] for i in order], [order[:9], order[9:]]):
            assert merge_all(batches) == reference
    kept = {(a.treatment, a.version, a.label) for a in reference.assignments}
    assert len(kept) == 20 and ("control", None, None) not in kept and ("on", 2, "whitelisted") in kept
    assert current(reference) == ("on", 2, "whitelisted", T0, "Production", "env-1")


def test_an_assignment_dropped_from_a_full_history_comes_back_with_its_later_exposures() -> None:
    # The documented bound: a full history forgets the first seen and count of what it drops.
    config = ProfilesConfig(assignment_history_size=1)
    served = [imp(T0, "A"), imp(T0 + 1, "B"), imp(T0 + 2, "A")]
    (together,) = merge_all([served], config).assignments
    (apart,) = merge_all([[i] for i in served], config).assignments
    assert (together.treatment, together.first_seen, together.count) == ("A", T0, 2)
    assert (apart.treatment, apart.first_seen, apart.count) == ("A", T0 + 2, 1)
    assert together.last_seen == apart.last_seen == T0 + 2


impressions = st.lists(
    st.builds(
        imp,
        time=st.integers(T0, T0 + 50),
        treatment=st.sampled_from(["on", "off", "control"]),
        version=st.sampled_from([1, 2, None]),
        label=st.sampled_from(["default rule", "whitelisted", "", None]),
        environment=st.sampled_from([("Production", "env-1"), ("Staging", "env-2")]),
    ),
    min_size=1,
    max_size=30,
)


def _deliveries(items, data):
    """``items`` shuffled, cut in two batches, with redelivered ones in between and all of them again after."""
    shuffled = data.draw(st.permutations(items))
    cut = data.draw(st.integers(0, len(shuffled)))
    redelivered = data.draw(st.lists(st.sampled_from(items), max_size=10))
    return [shuffled[:cut], redelivered, shuffled[cut:], items]


@settings(max_examples=150, deadline=None)
@given(items=impressions, data=st.data())
def test_result_is_independent_of_order_batching_and_redelivery(items, data) -> None:
    wide = ProfilesConfig(assignment_history_size=200)  # holds every assignment: nothing is forgotten
    reference = merge_all([items], wide)
    other = merge_all(_deliveries(items, data), wide)
    assert reference is not None and other is not None
    assert other.exposures == reference.exposures == len({fingerprint(i) for i in items})
    assert current(other) == current(reference)
    assert (other.first_seen, other.last_seen) == (reference.first_seen, reference.last_seen)
    assert other.assignments == reference.assignments  # the same history, in the same order
    assert other.seen == reference.seen


@settings(max_examples=150, deadline=None)
@given(items=impressions, size=st.integers(1, 6), data=st.data())
def test_a_bounded_history_holds_the_same_assignments_in_any_order(items, size, data) -> None:
    config = ProfilesConfig(assignment_history_size=size)
    reference = merge_all([items], config)
    assert merge_all([data.draw(st.permutations(items))], config) == reference  # one batch: all of it
    other = merge_all(_deliveries(items, data), config)
    assert (current(other), other.exposures, other.first_seen) == (
        current(reference),
        reference.exposures,
        reference.first_seen,
    )

    def held(state) -> list[tuple]:
        return [(a.treatment, a.label, a.version, a.last_seen) for a in state.assignments]

    assert held(other) == held(reference)


rows = st.lists(
    st.tuples(
        st.just("u-1"),
        st.just("flag_a"),
        st.sampled_from(["on", "off", "control"]),
        st.one_of(st.integers(T0, T0 + 50), st.integers(T0, T0 + 3 * DAY_MS)),
        st.sampled_from(["default rule", "whitelisted", "", None]),
        st.sampled_from([1, 2, None]),
        st.sampled_from(["Production", "Staging"]),
        st.sampled_from(["env-1", "env-2", ""]),
        st.sampled_from([None, "", "b-1"]),
        st.sampled_from([None, '{"plan":"pro"}']),
        st.just("user"),
        st.sampled_from(["customer_id", "anonymous_id"]),
    ),
    min_size=1,
    max_size=30,
)
configs = st.builds(
    ProfilesConfig,
    assignment_history_size=st.integers(1, 6) | st.just(20),
    dedup_window_days=st.sampled_from([1, 2, 14]),
    dedup_max_entries=st.sampled_from([10, 2000]),
)


@settings(max_examples=300, deadline=None)
@given(rows=rows, config=configs, data=st.data())
def test_a_new_pair_merges_as_the_general_path_does(rows, config, data) -> None:
    """merge_rows' fast paths for a (user, flag) without a state give what its general path (merge_into) gives."""
    batch = rows + data.draw(st.lists(st.sampled_from(rows), max_size=5))  # with redeliveries in the same batch
    batch = data.draw(st.permutations(batch))
    assert merge_rows(None, batch, config, now_ms=T0) == merge_into(None, batch, config, now_ms=T0)
