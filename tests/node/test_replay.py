"""The replay guard: a signature is served once while its window lasts, memory stays bounded,
and the nodes of a cluster share what they served (docs/security.md "Replay guard")."""

from __future__ import annotations

import asyncio
import secrets

from ressonance.node.node import Node
from ressonance.node.replay import WINDOW, Claim, ReplayGuard
from ressonance.scaling.memory import MemoryBroker, MemoryBus
from tests.node.fakes import Clock

NOW = 1_800_000_000.0


def signature() -> str:
    return secrets.token_hex(32)


def test_a_signature_is_served_once_within_its_window() -> None:
    guard = ReplayGuard(capacity=10)
    sig = signature()
    assert guard.claim(sig, int(NOW), NOW) is Claim.FIRST
    assert guard.claim(sig, int(NOW), NOW + 599) is Claim.REPLAYED
    assert guard.claim(signature(), int(NOW), NOW) is Claim.FIRST


def test_entries_expire_with_their_window() -> None:
    guard = ReplayGuard(capacity=1000)
    for i in range(100):
        guard.claim(signature(), int(NOW) + i, NOW)
    assert len(guard) == 100
    guard.expire(NOW + WINDOW + 49.5)  # windows of timestamps NOW..NOW+49 have closed
    assert len(guard) == 50
    guard.expire(NOW + WINDOW + 200)
    assert len(guard) == 0


def test_a_full_guard_drops_the_oldest_and_refuses_what_it_can_no_longer_check() -> None:
    """Bounded: never more than ``capacity``; a replay never gets through, instead requests as
    old as the forgotten ones are refused (TOO_OLD) and fresh ones still pass."""
    guard = ReplayGuard(capacity=100)
    old = [signature() for _ in range(100)]
    for i, sig in enumerate(old):
        assert guard.claim(sig, int(NOW) - 300 + i, NOW) is Claim.FIRST
    for i in range(1000):  # ten requests a second, each signed with the current time
        assert guard.claim(signature(), int(NOW) + 1 + i // 10, NOW) is Claim.FIRST
        assert len(guard) <= 100
    assert guard.horizon >= NOW - 300 + 99 + WINDOW
    assert {guard.claim(sig, int(NOW) - 300 + i, NOW) for i, sig in enumerate(old)} == {
        Claim.TOO_OLD
    }
    assert guard.claim(signature(), int(NOW) + 101, NOW) is Claim.FIRST


def test_more_than_capacity_within_one_second_is_refused_not_forgotten() -> None:
    """The guard cannot remember them all: the rest of that second is refused (fail closed),
    and none of those served can be replayed."""
    guard = ReplayGuard(capacity=10)
    sigs = [signature() for _ in range(20)]
    claims = [guard.claim(sig, int(NOW), NOW) for sig in sigs]
    assert claims == [Claim.FIRST] * 10 + [Claim.TOO_OLD] * 10 and len(guard) == 10
    assert {guard.claim(sig, int(NOW), NOW) for sig in sigs[:10]} == {Claim.REPLAYED}
    assert guard.claim(signature(), int(NOW) + 1, NOW) is Claim.FIRST  # a later second: room


def test_a_new_signature_older_than_all_in_a_full_guard_is_too_old() -> None:
    guard = ReplayGuard(capacity=3)
    for _ in range(3):
        guard.claim(signature(), int(NOW), NOW)
    assert guard.claim(signature(), int(NOW) - 10, NOW) is Claim.TOO_OLD
    assert len(guard) == 3


def make_node(bus: MemoryBus, clock: Clock, name: str, guard: bool = True) -> Node:
    node = Node(MemoryBroker(name, bus), clock=clock, replay=ReplayGuard(1000) if guard else None)
    asyncio.run(node.start())
    return node


def test_nodes_share_the_signatures_they_served() -> None:
    """Served on n1, refused on n2 and n3 once the ``seen`` message has gone round (sent at the
    end of the loop tick, one message for all the signatures of that tick)."""
    bus, clock = MemoryBus(), Clock()
    n1, n2, n3 = (make_node(bus, clock, name) for name in ("n1", "n2", "n3"))
    sigs = [signature() for _ in range(5)]

    async def serve_then_replay() -> list[Claim]:
        for sig in sigs:
            assert n1.claim_signature(sig, int(NOW), NOW) is Claim.FIRST
        await asyncio.sleep(0)  # the end of the tick: n1 sends its seen message
        await asyncio.sleep(0)
        return [node.claim_signature(sig, int(NOW), NOW) for node in (n2, n3) for sig in sigs]

    assert set(asyncio.run(serve_then_replay())) == {Claim.REPLAYED}


def test_off_by_default() -> None:
    bus, clock = MemoryBus(), Clock()
    node = make_node(bus, clock, "n1", guard=False)
    sig = signature()
    assert node.claim_signature(sig, int(NOW), NOW) is Claim.FIRST
    assert node.claim_signature(sig, int(NOW), NOW) is Claim.FIRST
