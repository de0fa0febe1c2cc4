"""What the HTTP API asks of the cluster: occupied channels, counts, presence members, the cache.

This node's own subscriptions plus what the cluster view holds of the others' (kept current by
their control messages), so a query never waits on another node.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ressonance.models import App
from ressonance.node.cluster import CachedEvent
from ressonance.node.node import Node
from ressonance.protocol import channels


class ChannelStats:
    """What the HTTP API reports of one channel (docs/protocol.md, "HTTP API reference")."""

    __slots__ = ("subscription_count", "user_count")

    def __init__(self, subscription_count: int, user_count: int | None) -> None:
        self.subscription_count = subscription_count
        self.user_count = user_count


def _user_count(node: Node, app: App, channel: str) -> int | None:
    if not channels.kind_of(channel).presence:
        return None
    roster = node.view.roster(app.id, channel)
    return len(roster) if roster is not None else 0


async def channel_stats(
    node: Node, app: App, prefix: str = "", limit: int = 0
) -> dict[str, ChannelStats]:
    """Occupied channels of ``app`` in the cluster whose names start with ``prefix``: the first
    ``limit`` found (0: all), this node's first; only those are counted and looked up."""
    stats: dict[str, ChannelStats] = {}
    for name, count in _occupied(node, app, prefix):
        if limit and len(stats) >= limit:
            break
        stats[name] = ChannelStats(count, _user_count(node, app, name))
    return stats


def occupied_count(node: Node, app: App) -> int:
    """How many channels of ``app`` are occupied in the cluster."""
    return sum(1 for _ in _occupied(node, app, ""))


def _occupied(node: Node, app: App, prefix: str) -> Iterator[tuple[str, int]]:
    """(channel, subscriptions in the cluster) of the occupied channels starting with
    ``prefix``, lazily."""
    state = node.hub.get(app.id)
    local = state.channels if state is not None else {}
    remote = node.view.remote_channels(app.id)
    for name, subscribers in local.items():
        if name.startswith(prefix):
            yield name, len(subscribers) + remote.get(name, 0)
    for name, count in remote.items():
        if name not in local and name.startswith(prefix):
            yield name, count


async def one_channel(node: Node, app: App, channel: str) -> ChannelStats:
    state = node.hub.get(app.id)
    subscribers = state.channels.get(channel) if state is not None else None
    count = (len(subscribers) if subscribers else 0) + node.view.remote_count(app.id, channel)
    return ChannelStats(count, _user_count(node, app, channel))


async def channel_users(node: Node, app: App, channel: str) -> dict[str, Any]:
    """user id → user_info of the members of a presence channel, cluster-wide."""
    roster = node.view.roster(app.id, channel)
    return roster.members() if roster is not None else {}


def cached_event(node: Node, app: App, channel: str) -> CachedEvent | None:
    return node.view.cached(app.id, channel, node.clock())
