"""What this node knows of the whole cluster: presence members, channel counts, connections and
cached events of every node, kept in step by control messages over the broker.

Each node is the only authority on its own sockets. It tells the others every presence join and
leave, its channel counts (batched per loop tick) and its connections per app (with each
heartbeat), and answers a ``hello`` with a full ``state``. Every node therefore holds the same
cluster-wide presence rosters, and each one sends ``member_added`` / ``member_removed`` to its own
subscribers only, when a user's first socket in the cluster joins or the last one leaves. A node
that stops sending heartbeats for ``node_timeout`` seconds is dropped, with its members, so it
leaves no ghosts (docs/cluster.md).

Messages are numbered per sender; a gap (a message lost while the broker was down) makes the
receiver ask the sender for its full state. So does a node heard from without its state (one
dropped as silent that turns out alive, one whose state was lost): it is asked again with each
of its heartbeats until its state comes. The messages are typed, and their wire form and
versioning rules are in :mod:`ressonance.node.control`; the cache channels' events are kept in
:mod:`ressonance.node.cache`. Pure bookkeeping: no I/O, the caller passes ``now`` and sends
what :meth:`ClusterView.messages_to_send` returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ressonance.node import control
from ressonance.node.cache import CachedEvent, CacheStore
from ressonance.node.control import Key
from ressonance.node.stats import LatencyHistogram
from ressonance.protocol.presence import Member, PresenceRoster

__all__ = [
    "AppsChanged",
    "CachedEvent",
    "ClusterView",
    "CountChanged",
    "DebugEntry",
    "DebugWatch",
    "Effect",
    "Key",
    "MemberAdded",
    "MemberRemoved",
    "Peer",
    "Seen",
    "SendState",
    "Terminate",
]

log = logging.getLogger("ressonance.cluster")


@dataclass(frozen=True, slots=True)
class MemberAdded:
    app_id: str
    channel: str
    member: Member


@dataclass(frozen=True, slots=True)
class MemberRemoved:
    app_id: str
    channel: str
    user_id: str


@dataclass(frozen=True, slots=True)
class CountChanged:
    app_id: str
    channel: str


@dataclass(frozen=True, slots=True)
class Terminate:
    app_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class SendState:
    """Another node asked for this node's full state: call :meth:`ClusterView.send_state`."""


@dataclass(frozen=True, slots=True)
class Seen:
    """Another node served signed HTTP requests: (signature hex, window end) for the replay
    guard (:mod:`ressonance.node.replay`)."""

    signatures: list[tuple[bytes, float]]


@dataclass(frozen=True, slots=True)
class DebugWatch:
    """A debug console viewer on another node watches ``app_id`` for ``ttl`` seconds more:
    forward this node's debug entries of it (:mod:`ressonance.node.debug`)."""

    app_id: str
    ttl: float


@dataclass(frozen=True, slots=True)
class DebugEntry:
    """A debug entry of node ``node_id``, for the viewers on this node."""

    node_id: str
    entry: control.Debug


@dataclass(frozen=True, slots=True)
class AppsChanged:
    """Another node changed ``app_id`` in the app store: read the store now."""

    app_id: str


Effect = (
    MemberAdded
    | MemberRemoved
    | CountChanged
    | Terminate
    | SendState
    | Seen
    | DebugWatch
    | DebugEntry
    | AppsChanged
)


class Peer:
    """One node's share of the cluster, as last told (or this node's own, for ``local``)."""

    __slots__ = (
        "conns",
        "counts",
        "last_seen",
        "members",
        "node_id",
        "region",
        "seq",
        "stats",
        "synced",
        "version",
    )

    def __init__(self, node_id: str, now: float) -> None:
        self.node_id = node_id
        self.region = ""
        self.version = control.VERSION  # of its last control message
        self.seq = 0
        self.synced = False  # its full state came
        self.last_seen = now
        self.conns: dict[str, int] = {}
        self.counts: dict[Key, int] = {}
        self.members: dict[Key, dict[str, Member]] = {}
        self.stats: dict[str, float] = {}  # as its last heartbeat or state carried them


class ClusterView:
    """Cluster-wide presence rosters, remote counts and the shared cache of cache channels."""

    def __init__(self, node_id: str, region: str = "", now: float = 0.0) -> None:
        self.node_id = node_id
        self.region = region
        self.local = Peer(node_id, now)
        self.peers: dict[str, Peer] = {}
        self.rosters: dict[Key, PresenceRoster] = {}
        self.cache = CacheStore()
        self.outbox: list[str] = []  # wire payloads for the broker, oldest first
        self._remote_counts: dict[Key, int] = {}
        self._seq = 0
        # heartbeat sent (another node's wall clock) -> received here; wall clocks of nodes on
        # NTP agree within milliseconds (docs/observability.md)
        self.broker_latency = LatencyHistogram()
        self.wall: Callable[[], float] = time.time

    # what the node asks ------------------------------------------------------------------
    def roster(self, app_id: str, channel: str) -> PresenceRoster | None:
        return self.rosters.get((app_id, channel))

    def remote_count(self, app_id: str, channel: str) -> int:
        """Subscriptions to ``channel`` on the other nodes."""
        return self._remote_counts.get((app_id, channel), 0)

    def remote_channels(self, app_id: str) -> dict[str, int]:
        """Channel → subscriptions on the other nodes, for the occupied channels of ``app_id``."""
        return {ch: n for (a, ch), n in self._remote_counts.items() if a == app_id}

    def remote_connections(self, app_id: str) -> int:
        return sum(peer.conns.get(app_id, 0) for peer in self.peers.values())

    def cached(self, app_id: str, channel: str, now: float) -> CachedEvent | None:
        return self.cache.get((app_id, channel), now)

    def messages_to_send(self) -> list[str]:
        """The wire payloads to send to the other nodes, oldest first; empties the outbox."""
        outbox, self.outbox = self.outbox, []
        return outbox

    # this node's changes: applied here, told to the others -------------------------------
    def join(self, app_id: str, channel: str, socket_id: str, member: Member) -> bool:
        """A local socket joined a presence channel; True for the user's first in the cluster."""
        first = self._add(self.local, (app_id, channel), socket_id, member)
        self._emit(control.Join(app_id, channel, socket_id, member.user_id, member.user_info))
        return first

    def leave(self, app_id: str, channel: str, socket_id: str) -> str | None:
        """A local socket left a presence channel; the user id when it was the user's last
        socket in the cluster (→ ``member_removed``), else None."""
        self._emit(control.Leave(app_id, channel, socket_id))
        return self._remove(self.local, (app_id, channel), socket_id)

    def counts(self, changed: dict[Key, int]) -> None:
        """This node's subscription counts of the changed channels (0: none left)."""
        self._emit(control.Counts(changed))

    def remember(self, app_id: str, channel: str, event: CachedEvent, ttl: int) -> None:
        """Keep the last event of a cache channel here and on every other node."""
        self.cache.put((app_id, channel), event)
        self._emit(control.Cache(app_id, channel, event.event, event.data, ttl))

    def terminate(self, app_id: str, user_id: str) -> None:
        self._emit(control.Terminate(app_id, user_id))

    def seen(self, signatures: list[tuple[str, float]]) -> None:
        """Signed requests this node served (replay guard): one message per loop tick."""
        self._emit(control.Seen([(bytes.fromhex(sig), expires) for sig, expires in signatures]))

    def hello(self, conns: dict[str, int], counts: dict[Key, int], now: float) -> None:
        """Announce this node (at start and after the broker's link came back): the others
        answer with their state, and get ours."""
        self._emit(control.Hello())
        self.send_state(conns, counts, now)

    def heartbeat(self, conns: dict[str, int], stats: dict[str, float] | None = None) -> None:
        """Tell the others this node lives, with its connections and its ``stats`` (kept as
        ``local.stats``, and sent again with each state)."""
        if stats is not None:
            self.local.stats = stats
        message = control.Heartbeat(self.region, conns, self.local.stats)
        # repeats the last sequence number: a receiver sees a gap after the last message
        self.outbox.append(control.encode(message, self._seq))

    def watch(self, app_id: str, ttl: float) -> None:
        """A debug console viewer here watches ``app_id``: the others forward its entries for
        ``ttl`` seconds."""
        self._emit(control.Watch(app_id, ttl))

    def leader(self) -> str:
        """The node that sends the cluster's webhook events: the live node (this one or a
        peer) with the smallest id (docs/webhooks.md)."""
        return min((self.node_id, *self.peers))

    def apps_changed(self, app_id: str) -> None:
        """This node changed ``app_id`` in the app store: the others read it now."""
        self._emit(control.Apps(app_id))

    def forwardable(self) -> bool:
        """Whether debug entries may go out: every node known reads version 2 (an older one
        would take their numbering for a lost message, :mod:`ressonance.node.control`)."""
        return all(peer.version >= 2 for peer in self.peers.values())

    def debug(self, entry: control.Debug) -> None:
        """Forward a debug entry to the viewers on other nodes (after :meth:`forwardable`):
        numbered aside, so that its loss asks no one for a state."""
        self.outbox.append(control.encode(entry, self._seq))

    def bye(self) -> None:
        self._emit(control.Bye())

    def send_state(self, conns: dict[str, int], counts: dict[Key, int], now: float) -> None:
        members, stats = self.local.members, self.local.stats
        self._emit(control.State(self.region, conns, counts, members, self.cache.live(now), stats))

    def _emit(self, message: control.Message) -> None:
        self._seq += 1
        self.outbox.append(control.encode(message, self._seq))

    # the others' messages ----------------------------------------------------------------
    def receive(self, origin: str, payload: str, now: float) -> list[Effect]:
        """Apply a control message from node ``origin``; returns what the node must deliver.
        A kind this node does not know is ignored, but its sequence number counts; a
        malformed message is logged and ignored (:mod:`ressonance.node.control`)."""
        seq, kind, message, error, version = control.decode(payload)
        if seq < 0:
            log.warning("ignored a malformed control message from node %s: %s", origin, error)
            return []
        peer = self.peers.get(origin)
        new = peer is None
        if peer is None:
            peer = self.peers[origin] = Peer(origin, now)
        peer.last_seen = now
        peer.version = version
        numbering = control.numbering(kind)
        if numbering == control.ASIDE:  # a debug entry: neither checked nor counted
            return self._apply(peer, kind, message, error, now)
        if numbering != control.UNCHECKED:  # a state follows a hello; bye needs none
            expected = peer.seq if numbering == control.REPEAT else peer.seq + 1
            if seq != expected or (not peer.synced and (new or numbering == control.REPEAT)):
                if new:  # dropped as silent while alive (stopped a while), or its hello lost
                    log.info("node %s is heard without its state: asking for it", origin)
                self._emit(control.Sync(origin))  # ask for the whole picture
        peer.seq = seq
        return self._apply(peer, kind, message, error, now)

    def _apply(
        self, peer: Peer, kind: str, message: control.Message | None, error: str, now: float
    ) -> list[Effect]:
        if message is None:
            if error:
                log.warning(
                    "ignored a malformed %r message from node %s: %s", kind, peer.node_id, error
                )
            return []  # else a kind of a newer release
        return _HANDLERS[type(message)](self, peer, message, now)

    def _on_join(self, peer: Peer, m: control.Join, now: float) -> list[Effect]:
        member = Member(m.user_id, m.user_info)
        if self._add(peer, (m.app_id, m.channel), m.socket_id, member):
            return [MemberAdded(m.app_id, m.channel, member)]
        return []

    def _on_leave(self, peer: Peer, m: control.Leave, now: float) -> list[Effect]:
        user_id = self._remove(peer, (m.app_id, m.channel), m.socket_id)
        return [MemberRemoved(m.app_id, m.channel, user_id)] if user_id is not None else []

    def _on_counts(self, peer: Peer, m: control.Counts, now: float) -> list[Effect]:
        return self._set_counts(peer, m.counts)

    def _on_heartbeat(self, peer: Peer, m: control.Heartbeat, now: float) -> list[Effect]:
        peer.region = m.region
        peer.conns = m.connections
        peer.stats = m.stats
        sent = m.stats.get("t")  # the sender's wall clock (its dashboard stats)
        if sent is not None:
            self.broker_latency.observe(max(0.0, self.wall() - sent))
        return []

    def _on_watch(self, peer: Peer, m: control.Watch, now: float) -> list[Effect]:
        return [DebugWatch(m.app_id, m.ttl)]

    def _on_apps(self, peer: Peer, m: control.Apps, now: float) -> list[Effect]:
        return [AppsChanged(m.app_id)]

    def _on_debug(self, peer: Peer, m: control.Debug, now: float) -> list[Effect]:
        return [DebugEntry(peer.node_id, m)]

    def _on_cache(self, peer: Peer, m: control.Cache, now: float) -> list[Effect]:
        self.cache.put((m.app_id, m.channel), CachedEvent(m.event, m.data, now + m.ttl))
        return []

    def _on_term(self, peer: Peer, m: control.Terminate, now: float) -> list[Effect]:
        return [Terminate(m.app_id, m.user_id)]

    def _on_seen(self, peer: Peer, m: control.Seen, now: float) -> list[Effect]:
        return [Seen(m.signatures)]

    def _on_sync(self, peer: Peer, m: control.Sync, now: float) -> list[Effect]:
        return [SendState()] if m.to == self.node_id else []

    def _on_hello(self, peer: Peer, m: control.Hello, now: float) -> list[Effect]:
        return [SendState()]

    def _on_bye(self, peer: Peer, m: control.Bye, now: float) -> list[Effect]:
        return self.drop(peer.node_id)

    def _on_state(self, peer: Peer, m: control.State, now: float) -> list[Effect]:
        """Replace everything known of ``peer`` by its full state, with the effects of the
        difference (members that left or joined meanwhile, counts that moved)."""
        peer.region = m.region
        peer.conns = m.connections
        peer.stats = m.stats
        peer.synced = True
        effects: list[Effect] = []
        wanted = m.members
        for key, sockets in list(peer.members.items()):
            for sid in [s for s in sockets if s not in wanted.get(key, {})]:
                user_id = self._remove(peer, key, sid)
                if user_id is not None:
                    effects.append(MemberRemoved(key[0], key[1], user_id))
        for key, sockets in wanted.items():
            for sid, member in sockets.items():
                if sid not in peer.members.get(key, {}) and self._add(peer, key, sid, member):
                    effects.append(MemberAdded(key[0], key[1], member))
        counts = dict(m.counts)
        counts.update({key: 0 for key in peer.counts if key not in counts})
        effects.extend(self._set_counts(peer, counts))
        self.cache.merge(m.cache, now)
        return effects

    # liveness ----------------------------------------------------------------------------
    def silent(self, now: float, timeout: float) -> list[str]:
        """The nodes not heard from for ``timeout`` seconds (heartbeats come every second)."""
        return [p.node_id for p in self.peers.values() if now - p.last_seen > timeout]

    def expire_cache(self, now: float) -> None:
        self.cache.expire(now)

    def drop(self, node_id: str) -> list[Effect]:
        """Forget a node: its members leave (``member_removed`` where it was a user's last
        socket) and its counts go."""
        peer = self.peers.pop(node_id, None)
        if peer is None:
            return []
        effects: list[Effect] = []
        for key, sockets in list(peer.members.items()):
            for sid in list(sockets):
                user_id = self._remove(peer, key, sid)
                if user_id is not None:
                    effects.append(MemberRemoved(key[0], key[1], user_id))
        effects.extend(self._set_counts(peer, dict.fromkeys(peer.counts, 0)))
        return effects

    # shared bookkeeping ------------------------------------------------------------------
    def _add(self, peer: Peer, key: Key, socket_id: str, member: Member) -> bool:
        sockets = peer.members.setdefault(key, {})
        if socket_id in sockets:
            return False
        sockets[socket_id] = member
        roster = self.rosters.get(key)
        if roster is None:
            roster = self.rosters[key] = PresenceRoster()
        return roster.add(member)

    def _remove(self, peer: Peer, key: Key, socket_id: str) -> str | None:
        sockets = peer.members.get(key)
        member = sockets.pop(socket_id, None) if sockets is not None else None
        if member is None:
            return None
        if not sockets:
            del peer.members[key]
        roster = self.rosters.get(key)
        last = roster is not None and roster.remove(member.user_id)
        if roster is not None and not roster:
            del self.rosters[key]
        return member.user_id if last else None

    def _set_counts(self, peer: Peer, changed: dict[Key, int]) -> list[Effect]:
        effects: list[Effect] = []
        for key, count in changed.items():
            before = peer.counts.get(key, 0)
            if count == before:
                continue
            if count:
                peer.counts[key] = count
            else:
                peer.counts.pop(key, None)
            total = self._remote_counts.get(key, 0) + count - before
            if total > 0:
                self._remote_counts[key] = total
            else:
                self._remote_counts.pop(key, None)
            effects.append(CountChanged(*key))
        return effects


# each takes its own message class (Any: a Callable's argument cannot narrow per entry)
Handler = Callable[[ClusterView, Peer, Any, float], list[Effect]]

# message class → what applies it (the wire side of each kind is control.KINDS)
_HANDLERS: dict[type[control.Message], Handler] = {
    control.Join: ClusterView._on_join,
    control.Leave: ClusterView._on_leave,
    control.Counts: ClusterView._on_counts,
    control.Heartbeat: ClusterView._on_heartbeat,
    control.Cache: ClusterView._on_cache,
    control.Terminate: ClusterView._on_term,
    control.Seen: ClusterView._on_seen,
    control.Sync: ClusterView._on_sync,
    control.Hello: ClusterView._on_hello,
    control.Bye: ClusterView._on_bye,
    control.State: ClusterView._on_state,
    control.Watch: ClusterView._on_watch,
    control.Debug: ClusterView._on_debug,
    control.Apps: ClusterView._on_apps,
}
if set(_HANDLERS) != {kind.cls for kind in control.KINDS}:
    raise TypeError("every control message kind needs a handler in ClusterView")
