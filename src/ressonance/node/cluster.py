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
of its heartbeats until its state comes. Pure bookkeeping: no I/O, the caller passes ``now``
and sends :attr:`ClusterView.outbox`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from ressonance.protocol.presence import Member, PresenceRoster

log = logging.getLogger("ressonance.cluster")

Key = tuple[str, str]  # (app id, channel)


@dataclass(slots=True)
class CachedEvent:
    """The last event published on a cache channel (PROTOCOL.md A §1.7)."""

    event: str
    data: str
    expires_at: float


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


Effect = MemberAdded | MemberRemoved | CountChanged | Terminate | SendState | Seen


class Peer:
    """One node's share of the cluster, as last told (or this node's own, for ``local``)."""

    __slots__ = ("conns", "counts", "last_seen", "members", "node_id", "region", "seq", "synced")

    def __init__(self, node_id: str, now: float) -> None:
        self.node_id = node_id
        self.region = ""
        self.seq = 0
        self.synced = False  # its full state came
        self.last_seen = now
        self.conns: dict[str, int] = {}
        self.counts: dict[Key, int] = {}
        self.members: dict[Key, dict[str, Member]] = {}


class ClusterView:
    """Cluster-wide presence rosters, remote counts and the shared cache of cache channels."""

    def __init__(self, node_id: str, region: str = "", now: float = 0.0) -> None:
        self.node_id = node_id
        self.region = region
        self.local = Peer(node_id, now)
        self.peers: dict[str, Peer] = {}
        self.rosters: dict[Key, PresenceRoster] = {}
        self.cache: dict[Key, CachedEvent] = {}
        self.outbox: list[str] = []
        self._remote_counts: dict[Key, int] = {}
        self._seq = 0

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
        entry = self.cache.get((app_id, channel))
        if entry is not None and entry.expires_at <= now:
            del self.cache[(app_id, channel)]
            return None
        return entry

    # this node's changes: applied here, told to the others -------------------------------
    def join(self, app_id: str, channel: str, socket_id: str, member: Member) -> bool:
        """A local socket joined a presence channel; True for the user's first in the cluster."""
        first = self._add(self.local, (app_id, channel), socket_id, member)
        self._emit(
            {
                "t": "join",
                "a": app_id,
                "c": channel,
                "i": socket_id,
                "u": member.user_id,
                "n": member.user_info,
            }
        )
        return first

    def leave(self, app_id: str, channel: str, socket_id: str) -> str | None:
        """A local socket left a presence channel; the user id when it was the user's last
        socket in the cluster (→ ``member_removed``), else None."""
        self._emit({"t": "leave", "a": app_id, "c": channel, "i": socket_id})
        return self._remove(self.local, (app_id, channel), socket_id)

    def counts(self, changed: dict[Key, int]) -> None:
        """This node's subscription counts of the changed channels (0: none left)."""
        by_app: dict[str, dict[str, int]] = {}
        for (app_id, channel), count in changed.items():
            by_app.setdefault(app_id, {})[channel] = count
        self._emit({"t": "counts", "c": by_app})

    def remember(self, app_id: str, channel: str, event: CachedEvent, ttl: int) -> None:
        """Keep the last event of a cache channel here and on every other node."""
        self.cache[(app_id, channel)] = event
        message = {"t": "cache", "a": app_id, "c": channel, "e": event.event, "d": event.data}
        self._emit({**message, "ttl": ttl})

    def terminate(self, app_id: str, user_id: str) -> None:
        self._emit({"t": "term", "a": app_id, "u": user_id})

    def seen(self, signatures: list[tuple[str, float]]) -> None:
        """Signed requests this node served (replay guard): one message per loop tick."""
        self._emit({"t": "seen", "g": signatures})

    def hello(self, conns: dict[str, int], counts: dict[Key, int], now: float) -> None:
        """Announce this node (at start and after the broker's link came back): the others
        answer with their state, and get ours."""
        self._emit({"t": "hello"})
        self.send_state(conns, counts, now)

    def heartbeat(self, conns: dict[str, int]) -> None:
        self.outbox.append(_dump({"t": "hb", "s": self._seq, "r": self.region, "n": conns}))

    def bye(self) -> None:
        self._emit({"t": "bye"})

    def send_state(self, conns: dict[str, int], counts: dict[Key, int], now: float) -> None:
        members: dict[str, dict[str, dict[str, list[Any]]]] = {}
        for (app_id, channel), sockets in self.local.members.items():
            members.setdefault(app_id, {})[channel] = {
                sid: [m.user_id, m.user_info] for sid, m in sockets.items()
            }
        by_app: dict[str, dict[str, int]] = {}
        for (app_id, channel), count in counts.items():
            by_app.setdefault(app_id, {})[channel] = count
        cache = {
            f"{a}\x1f{c}": [e.event, e.data, max(0.0, e.expires_at - now)]
            for (a, c), e in self.cache.items()
            if e.expires_at > now
        }
        self._emit(
            {"t": "state", "r": self.region, "n": conns, "c": by_app, "m": members, "k": cache}
        )

    def _emit(self, message: dict[str, Any]) -> None:
        self._seq += 1
        message["s"] = self._seq
        self.outbox.append(_dump(message))

    # the others' messages ----------------------------------------------------------------
    def receive(self, origin: str, payload: str, now: float) -> list[Effect]:
        """Apply a control message from node ``origin``; returns what the node must deliver."""
        try:
            message = json.loads(payload)
            kind = message["t"]
            seq = int(message["s"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed control message from node %s", origin)
            return []
        peer = self.peers.get(origin)
        new = peer is None
        if peer is None:
            peer = self.peers[origin] = Peer(origin, now)
        peer.last_seen = now
        if kind not in ("state", "hello", "bye"):  # a state follows a hello; bye needs none
            expected = peer.seq if kind == "hb" else peer.seq + 1
            if seq != expected or (not peer.synced and (new or kind == "hb")):
                if new:  # dropped as silent while alive (stopped a while), or its hello lost
                    log.info("node %s is heard without its state: asking for it", origin)
                self._emit({"t": "sync", "to": origin})  # ask for the whole picture
        peer.seq = seq
        handler = _HANDLERS.get(kind)
        if handler is None:
            return []
        try:
            return handler(self, peer, message, now)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            log.warning("ignored a malformed %r message from node %s", kind, origin)
            return []

    def _on_join(self, peer: Peer, m: dict[str, Any], now: float) -> list[Effect]:
        key = (str(m["a"]), str(m["c"]))
        member = Member(str(m["u"]), m.get("n"))
        if self._add(peer, key, str(m["i"]), member):
            return [MemberAdded(key[0], key[1], member)]
        return []

    def _on_leave(self, peer: Peer, m: dict[str, Any], now: float) -> list[Effect]:
        key = (str(m["a"]), str(m["c"]))
        user_id = self._remove(peer, key, str(m["i"]))
        return [MemberRemoved(key[0], key[1], user_id)] if user_id is not None else []

    def _on_counts(self, peer: Peer, m: dict[str, Any], now: float) -> list[Effect]:
        changed = {(a, ch): int(n) for a, chans in m["c"].items() for ch, n in chans.items()}
        return self._set_counts(peer, changed)

    def _on_heartbeat(self, peer: Peer, m: dict[str, Any], now: float) -> list[Effect]:
        peer.region = str(m.get("r", ""))
        peer.conns = {str(a): int(n) for a, n in m.get("n", {}).items()}
        return []

    def _on_cache(self, peer: Peer, m: dict[str, Any], now: float) -> list[Effect]:
        expires = now + float(m.get("ttl", 0))
        self.cache[(str(m["a"]), str(m["c"]))] = CachedEvent(str(m["e"]), str(m["d"]), expires)
        return []

    def _on_term(self, peer: Peer, m: dict[str, Any], now: float) -> list[Effect]:
        return [Terminate(str(m["a"]), str(m["u"]))]

    def _on_seen(self, peer: Peer, m: dict[str, Any], now: float) -> list[Effect]:
        return [Seen([(bytes.fromhex(sig), float(expires)) for sig, expires in m["g"]])]

    def _on_sync(self, peer: Peer, m: dict[str, Any], now: float) -> list[Effect]:
        return [SendState()] if m.get("to") == self.node_id else []

    def _on_hello(self, peer: Peer, m: dict[str, Any], now: float) -> list[Effect]:
        return [SendState()]

    def _on_bye(self, peer: Peer, m: dict[str, Any], now: float) -> list[Effect]:
        return self.drop(peer.node_id)

    def _on_state(self, peer: Peer, m: dict[str, Any], now: float) -> list[Effect]:
        """Replace everything known of ``peer`` by its full state, with the effects of the
        difference (members that left or joined meanwhile, counts that moved)."""
        self._on_heartbeat(peer, m, now)
        peer.synced = True
        effects: list[Effect] = []
        wanted = {
            (a, ch): {sid: Member(str(v[0]), v[1]) for sid, v in sockets.items()}
            for a, chans in m.get("m", {}).items()
            for ch, sockets in chans.items()
        }
        for key, sockets in list(peer.members.items()):
            for sid in [s for s in sockets if s not in wanted.get(key, {})]:
                user_id = self._remove(peer, key, sid)
                if user_id is not None:
                    effects.append(MemberRemoved(key[0], key[1], user_id))
        for key, sockets in wanted.items():
            for sid, member in sockets.items():
                if sid not in peer.members.get(key, {}) and self._add(peer, key, sid, member):
                    effects.append(MemberAdded(key[0], key[1], member))
        counts = {(a, ch): int(n) for a, chans in m.get("c", {}).items() for ch, n in chans.items()}
        counts.update({key: 0 for key in peer.counts if key not in counts})
        effects.extend(self._set_counts(peer, counts))
        for name, (event, data, ttl) in m.get("k", {}).items():
            app_id, _, channel = name.partition("\x1f")
            mine = self.cache.get((app_id, channel))
            if mine is None or mine.expires_at < now + float(ttl):
                self.cache[(app_id, channel)] = CachedEvent(event, data, now + float(ttl))
        return effects

    # liveness ----------------------------------------------------------------------------
    def silent(self, now: float, timeout: float) -> list[str]:
        """The nodes not heard from for ``timeout`` seconds (heartbeats come every second)."""
        return [p.node_id for p in self.peers.values() if now - p.last_seen > timeout]

    def expire_cache(self, now: float) -> None:
        for key in [k for k, e in self.cache.items() if e.expires_at <= now]:
            del self.cache[key]

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


_HANDLERS = {
    "join": ClusterView._on_join,
    "leave": ClusterView._on_leave,
    "counts": ClusterView._on_counts,
    "hb": ClusterView._on_heartbeat,
    "cache": ClusterView._on_cache,
    "term": ClusterView._on_term,
    "seen": ClusterView._on_seen,
    "sync": ClusterView._on_sync,
    "hello": ClusterView._on_hello,
    "bye": ClusterView._on_bye,
    "state": ClusterView._on_state,
}


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
