"""Channel kinds and name rules (docs/protocol.md, "Channel kinds and names").

Prefixes are matched from the start of the name only; a name is at most 200 characters of
``A-Za-z0-9_-=@,.;``. ``#server-to-user-{id}`` is the reserved per-user channel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

MAX_NAME_LENGTH = 200
USER_CHANNEL_PREFIX = "#server-to-user-"
_NAME_RE = re.compile(r"[A-Za-z0-9_\-=@,.;]+")


@dataclass(frozen=True, slots=True)
class ChannelKind:
    """What a channel name says about the channel."""

    private: bool = False
    presence: bool = False
    encrypted: bool = False
    cache: bool = False
    user: bool = False

    @property
    def needs_auth(self) -> bool:
        return self.private or self.presence

    @property
    def public(self) -> bool:
        return not (self.private or self.presence or self.user)


_PREFIXES: tuple[tuple[str, ChannelKind], ...] = (
    ("private-encrypted-cache-", ChannelKind(private=True, encrypted=True, cache=True)),
    ("private-encrypted-", ChannelKind(private=True, encrypted=True)),
    ("private-cache-", ChannelKind(private=True, cache=True)),
    ("private-", ChannelKind(private=True)),
    ("presence-cache-", ChannelKind(presence=True, cache=True)),
    ("presence-", ChannelKind(presence=True)),
    ("cache-", ChannelKind(cache=True)),
)
_PUBLIC = ChannelKind()
_USER = ChannelKind(user=True)


def is_valid_name(name: object) -> bool:
    """True for a name a client may use: a user channel, or a short name of allowed characters."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        return False
    if name.startswith(USER_CHANNEL_PREFIX):
        return len(name) > len(USER_CHANNEL_PREFIX)
    return _NAME_RE.fullmatch(name) is not None


@lru_cache(maxsize=4096)
def kind_of(name: str) -> ChannelKind:
    """The kind of a (valid) channel name, by its prefix."""
    if name.startswith(USER_CHANNEL_PREFIX):
        return _USER
    for prefix, kind in _PREFIXES:
        if name.startswith(prefix):
            return kind
    return _PUBLIC


def user_channel(user_id: str) -> str:
    """The reserved channel that ``sendToUser`` publishes on for ``user_id``."""
    return USER_CHANNEL_PREFIX + user_id
