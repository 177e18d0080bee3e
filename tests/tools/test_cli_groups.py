"""``flagbridge_ops.cli``: a command module adds an action to an existing group through ``group_actions``, with no
reach into argparse's private attributes and no reliance on the order modules register in."""

from __future__ import annotations

import argparse

import pytest

from flagbridge_ops.cli import add_command, add_group, group_actions


def _handler(ctx: object) -> dict[str, object]:
    return {}


def test_an_action_added_to_an_existing_group_parses() -> None:
    # Given a group made by add_group
    parser = argparse.ArgumentParser(prog="flagbridge")
    commands = parser.add_subparsers(dest="command")
    add_group(commands, "things", summary="s", description="d", examples=["flagbridge things list"])

    # When another module adds an action to it
    extra = add_command(
        group_actions(commands, "things"), "count", _handler, summary="s", description="d", examples=["x"]
    )
    extra.add_argument("--max", type=int)

    # Then the action parses under the group
    args = parser.parse_args(["things", "count", "--max", "3"])
    assert (args.command, args.things_command, args.max, args.run) == ("things", "count", 3, _handler)


def test_a_name_that_is_no_group_is_one_clear_error() -> None:
    parser = argparse.ArgumentParser(prog="flagbridge")
    commands = parser.add_subparsers(dest="command")
    add_command(commands, "plain", _handler, summary="s", description="d", examples=["x"])
    with pytest.raises(LookupError, match="no command group 'plain'"):
        group_actions(commands, "plain")
    with pytest.raises(LookupError, match="no command group 'later'"):
        group_actions(commands, "later")


def test_the_traffic_group_has_its_aws_actions() -> None:
    from flagbridge_ops.__main__ import build_parser

    parser = build_parser()
    args = parser.parse_args(["traffic", "status", "run-1", "--stack", "s"])
    assert (args.traffic_command, args.run_id, args.stack) == ("status", "run-1", "s")
    assert parser.parse_args(["traffic", "stop", "run-1"]).traffic_command == "stop"
