"""Presence members and the first-socket / last-socket rules (docs/protocol.md, "Presence members").

A user is a member while at least one of its sockets is subscribed: ``member_added`` goes out for
its first socket only and ``member_removed`` after its last. Counts are of distinct users.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ressonance.errors import SubscriptionError
from ressonance.protocol import messages

MAX_USER_ID_LENGTH = 128


@dataclass(frozen=True, slots=True)
class Member:
    """A presence member as the channel_data of its subscription declared it."""

    user_id: str
    user_info: Any


def parse_channel_data(channel_data: object, max_info_bytes: int) -> Member:
    """Validate presence ``channel_data`` (a JSON string with ``user_id`` and optional
    ``user_info``). Raises :class:`SubscriptionError` the caller sends on the channel."""
    if not isinstance(channel_data, str):
        raise SubscriptionError("AuthError", "Presence channels need channel_data", 401)
    try:
        decoded = messages.loads(channel_data)
    except ValueError:
        raise SubscriptionError("AuthError", "channel_data is not valid JSON", 401) from None
    if not isinstance(decoded, dict):
        raise SubscriptionError("AuthError", "channel_data must be a JSON object", 401)
    user_id = decoded.get("user_id")
    if isinstance(user_id, bool) or not isinstance(user_id, str | int) or user_id == "":
        raise SubscriptionError("AuthError", "channel_data needs a user_id", 401)
    user_id = str(user_id)
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise SubscriptionError(
            "LimitReached", f"user_id is longer than {MAX_USER_ID_LENGTH} characters", 4100
        )
    info = decoded.get("user_info")
    if info is not None and len(json.dumps(info, separators=(",", ":"))) > max_info_bytes:
        raise SubscriptionError(
            "LimitReached", f"user_info is larger than {max_info_bytes} bytes", 4100
        )
    return Member(user_id, info)


class PresenceRoster:
    """One presence channel's members on this node: user id → (info, number of sockets)."""

    __slots__ = ("_info", "_sockets")

    def __init__(self) -> None:
        self._info: dict[str, Any] = {}
        self._sockets: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._sockets)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._sockets

    def add(self, member: Member) -> bool:
        """Count one more socket of ``member``; True for the user's first (→ member_added)."""
        count = self._sockets.get(member.user_id, 0)
        self._sockets[member.user_id] = count + 1
        if count == 0:
            self._info[member.user_id] = member.user_info
        return count == 0

    def remove(self, user_id: str) -> bool:
        """Count one socket less; True when it was the user's last (→ member_removed)."""
        count = self._sockets.get(user_id, 0)
        if count <= 1:
            self._sockets.pop(user_id, None)
            self._info.pop(user_id, None)
            return count == 1
        self._sockets[user_id] = count - 1
        return False

    def info(self, user_id: str) -> Any:
        """The ``user_info`` of a member (None for none, or for no such member)."""
        return self._info.get(user_id)

    def snapshot(self) -> dict[str, Any]:
        """The ``presence`` object of ``subscription_succeeded``: ids, hash and count."""
        ids = list(self._info)
        return {"ids": ids, "hash": dict(self._info), "count": len(ids)}

    def user_ids(self) -> list[str]:
        return list(self._info)

    def members(self) -> dict[str, Any]:
        """user id → user_info of every member."""
        return dict(self._info)
