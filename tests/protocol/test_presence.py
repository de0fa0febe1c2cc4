from __future__ import annotations

import pytest

from ressonance.errors import SubscriptionError
from ressonance.protocol.presence import Member, PresenceRoster, parse_channel_data


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


def test_channel_data_with_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(SubscriptionError):
        parse_channel_data('{"user_id":"1","user_info":{"name":"\\ud800"}}', 1000)
    assert (
        parse_channel_data('{"user_id":"1","user_info":"\\ud83d\\ude00"}', 1000).user_info == "😀"
    )
