from __future__ import annotations

from ressonance.protocol.presence import Member, PresenceRoster


def test_first_and_last_socket_rules() -> None:
    roster = PresenceRoster()
    assert roster.add(Member("1", {"n": 1})) is True
    assert roster.add(Member("1", {"n": 1})) is False  # second tab of the same user
    assert roster.add(Member("2", None)) is True
    assert len(roster) == 2
    assert roster.snapshot() == {"ids": ["1", "2"], "hash": {"1": {"n": 1}, "2": None}, "count": 2}
    assert roster.remove("1") is False
    assert roster.remove("1") is True
    assert roster.remove("1") is False  # unknown user: nothing to remove
    assert roster.user_ids() == ["2"]
