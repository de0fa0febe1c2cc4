"""The node's event port: typed domain events, emitted where a change starts.

Metrics, the debug console, webhooks and quotas listen here (registered at the composition
root) instead of editing the node. Rules the emitters keep:

- An event is emitted on the node where the change starts, once: a presence member joins on
  the node of its socket, not on every node that learns of it over the broker. Cluster-wide
  facts (``ChannelOccupied``, ``MemberAdded``) are judged with what this node knows of the
  others at that moment (docs/cluster.md): the first socket of a channel here while no other
  node counts one.
- Fan-out is counted once per message and node (``Delivered.sockets``), never once per socket.
- With no listener the port costs one check per emission site and builds no event.
- A listener that raises is logged (rate-limited) and the others still run; the node goes on.
  Listeners run synchronously on the event loop: they must be quick (count, enqueue).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ressonance.faultlog import FaultLog

log = logging.getLogger("ressonance.node")
faults = FaultLog(log)


@dataclass(frozen=True, slots=True)
class ConnectionOpened:
    app_id: str
    socket_id: str


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    app_id: str
    socket_id: str


@dataclass(frozen=True, slots=True)
class Subscribed:
    app_id: str
    channel: str
    socket_id: str


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    app_id: str
    channel: str
    socket_id: str


@dataclass(frozen=True, slots=True)
class ChannelOccupied:
    """The channel's first subscriber in the cluster (as this node knows it) is here."""

    app_id: str
    channel: str


@dataclass(frozen=True, slots=True)
class ChannelVacated:
    """The channel's last subscriber in the cluster (as this node knows it) left here."""

    app_id: str
    channel: str


@dataclass(frozen=True, slots=True)
class MemberAdded:
    """A user's first socket in the cluster joined a presence channel, on this node."""

    app_id: str
    channel: str
    user_id: str


@dataclass(frozen=True, slots=True)
class MemberRemoved:
    """A user's last socket in the cluster left a presence channel, on this node."""

    app_id: str
    channel: str
    user_id: str


@dataclass(frozen=True, slots=True)
class MessagePublished:
    """An event published through this node's HTTP API on one channel (``size``: the data's
    characters), before it fans out here and on the other nodes."""

    app_id: str
    channel: str
    event: str
    size: int
    # as published, for the debug console; not compared (the event is the fields above)
    data: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """A ``client-`` event a socket of this node sent, before it fans out."""

    app_id: str
    channel: str
    event: str
    socket_id: str
    size: int
    # as the client sent it (parsed), for the debug console; not compared
    data: object = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Delivered:
    """One message written to ``sockets`` subscribers of ``channel`` on this node (``size``
    bytes each): published events, client events, presence and count events alike, whichever
    node they came from."""

    app_id: str
    channel: str
    sockets: int
    size: int


@dataclass(frozen=True, slots=True)
class ErrorSent:
    """``pusher:error`` sent to a socket (closed after it when the code is fatal)."""

    app_id: str
    socket_id: str
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    """One attempt to post a webhook, on the node that posts them (the leader): ``outcome``
    delivered, retried or dead, ``reason`` the status or the error."""

    app_id: str
    url: str
    events: tuple[str, ...]
    outcome: str
    reason: str
    attempts: int


Event = (
    ConnectionOpened
    | ConnectionClosed
    | Subscribed
    | Unsubscribed
    | ChannelOccupied
    | ChannelVacated
    | MemberAdded
    | MemberRemoved
    | MessagePublished
    | ClientEvent
    | Delivered
    | ErrorSent
    | WebhookAttempt
)
Listener = Callable[[Event], None]


class EventPort:
    """Where listeners register and the node emits. Emitters check :attr:`listeners` first, so
    that no event is built when nobody listens."""

    __slots__ = ("listeners",)

    def __init__(self) -> None:
        self.listeners: tuple[Listener, ...] = ()

    def listen(self, listener: Listener) -> None:
        self.listeners = (*self.listeners, listener)

    def unlisten(self, listener: Listener) -> None:
        self.listeners = tuple(x for x in self.listeners if x != listener)

    def emit(self, event: Event) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                faults.exception("an event listener failed on %s", type(event).__name__)
