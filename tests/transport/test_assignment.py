"""Sharding and the assignment message: what an agent is told to probe, and how it survives change."""

from __future__ import annotations

import json

import pytest

from monitor.transport.assignment import (
    AssignmentError,
    decode_assignment,
    encode_assignment,
    shard,
)
from tests.commands.running import hanoi_lab

INV = hanoi_lab("127.70.0.1")
AGENTS = [f"agent-{i}" for i in range(3)]


def test_balanced_gives_every_point_to_exactly_one_agent_and_keeps_districts_whole() -> None:
    shares = shard(INV, AGENTS)
    seen = [p for share in shares.values() for p in share]
    assert sorted(seen) == sorted(INV.points)
    for share in shares.values():
        assert share, "three agents for 30 districts: none is left idle"
        for pid in share:
            assert INV.points[pid].district in share


def test_a_lost_agent_moves_only_its_own_points() -> None:
    before = shard(INV, AGENTS)
    after = shard(INV, AGENTS[:2])
    for agent in AGENTS[:2]:
        assert before[agent] <= after[agent], "the agents that stayed keep what they had"
    assert after[AGENTS[0]] | after[AGENTS[1]] == set(INV.points)
    moved = before[AGENTS[2]]
    assert moved & after[AGENTS[0]] and moved & after[AGENTS[1]], "spread over both others"


def test_two_replicas_probe_each_point_from_two_agents() -> None:
    shares = shard(INV, AGENTS, replicas=2)
    for pid in INV.points:
        assert sum(pid in s for s in shares.values()) == 2
    # with one agent there is one vantage, not an error
    alone = shard(INV, AGENTS[:1], replicas=2)
    assert alone[AGENTS[0]] == set(INV.points)


def test_by_district_follows_the_config_even_when_its_agent_is_offline() -> None:
    shares = shard(INV, [], mode="by-district", districts_of={"agent-ba-vi": ["ba-vi"]})
    assert shares["agent-ba-vi"] == {"ba-vi", *(p.id for p in INV.descendants("ba-vi"))}


def test_the_assignment_round_trips_through_the_config_loader() -> None:
    share = shard(INV, AGENTS)["agent-1"]
    data = encode_assignment("agent-1", 7, INV, share, now=1000.0)
    got = decode_assignment(data, "agent-1")
    assert got.version == 7 and got.issued_at == 1000.0
    assert got.inventory is not None and set(got.inventory.points) == share
    for pid in share:
        mine, theirs = got.inventory.points[pid], INV.points[pid]
        assert (mine.host, mine.name, mine.level) == (theirs.host, theirs.name, theirs.level)
        assert got.inventory.profile_of(pid) == INV.profile_of(pid)
    assert got.inventory.settings == INV.settings
    empty = decode_assignment(encode_assignment("agent-1", 8, INV, []), "agent-1")
    assert empty.inventory is None and empty.points == frozenset()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\xff", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b'{"v": 2}', "version 1"),
        (b'{"v": 1, "agent": "agent-2", "version": 1, "issued_at": 0}', "another agent"),
        (b'{"v": 1, "agent": "agent-1", "version": true, "issued_at": 0}', "version"),
        (
            json.dumps(
                {"v": 1, "agent": "agent-1", "version": 1, "issued_at": 0, "config": {"points": 3}}
            ).encode(),
            "refused",
        ),
    ],
)
def test_a_bad_assignment_is_refused_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(AssignmentError, match=why):
        decode_assignment(data, "agent-1")
