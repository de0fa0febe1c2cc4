"""The debug console's feed: per app, the recent connections, subscriptions, messages and errors
of the whole cluster, for the operator dashboard (``GET /api/apps/{id}/events``).

While a viewer watches an app (a lease, renewed by each of its polls), this node records the
app's debug entries from the node's event port (:mod:`ressonance.node.events`) in a bounded
ring, and asks the other nodes to forward theirs (a ``watch`` control message, renewed every
:data:`RENEW` seconds while the lease lasts). A node with a live remote watch forwards the app's
entries as ``debug`` control messages, at most :data:`RATE` a second (a token bucket); those
over it are counted and told with the next forwarded one. The viewer's node appends them to its
ring with the origin node's id. See :mod:`ressonance.node.control` for why ``debug`` is numbered
aside (a lost entry asks no one for a state) and forwarded only among version 2 nodes.

Everything is bounded and nothing waits for a viewer: the ring keeps :data:`RING` entries per
app, a data string at most :data:`DATA_LIMIT` characters, a long poll at most :data:`MAX_WAIT`
seconds, and a viewer that reads too slowly is told how many entries it lost (``dropped``:
pushed out of the ring, or over a node's rate limit). It costs nothing while nobody watches:
the feed listens on the event port only while a lease (local or remote) is live; leases are
expired on each event and by :meth:`DebugFeed.expire` from the node's housekeeping.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from itertools import islice
from typing import Any

from ressonance.node import events
from ressonance.node.cluster import ClusterView, DebugEntry, DebugWatch
from ressonance.node.control import Debug

LEASE = 30.0  # seconds a viewer's poll keeps an app watched
RENEW = 10.0  # seconds between two ``watch`` messages of a live lease
MAX_REMOTE_LEASE = 60.0  # the longest a ``watch`` from another node is taken for
RING = 1000  # entries kept per watched app
DATA_LIMIT = 2048  # characters of an entry's data (longer ones end with "…")
RATE = 100.0  # debug entries this node forwards per second, at most (all apps)
BURST = 100.0  # ... and at once
MAX_WAIT = 25.0  # seconds a long poll waits, at most
START = 1  # the sequence number a ring starts at: 0 means "from now" to read()

Entry = dict[str, Any]
Read = tuple[list[Entry], int, int]  # (entries, next ``after``, dropped)


def clip(data: str | None) -> str | None:
    if data is None or len(data) <= DATA_LIMIT:
        return data
    return data[:DATA_LIMIT] + "…"


def describe(event: events.Event, at: float) -> Debug | None:
    """The debug entry of a domain event at ``at`` (None: the console does not show it), in
    the form it is forwarded in."""
    a = event.app_id
    if isinstance(event, events.Subscribed):
        return Debug(a, "subscribed", at, event.channel, event.socket_id)
    if isinstance(event, events.Unsubscribed):
        return Debug(a, "unsubscribed", at, event.channel, event.socket_id)
    if isinstance(event, events.MessagePublished):
        return Debug(a, "api_message", at, event.channel, None, event.event, clip(event.data))
    if isinstance(event, events.ClientEvent):
        data = event.data
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        return Debug(a, "client_event", at, event.channel, event.socket_id, event.event, clip(text))
    if isinstance(event, events.ConnectionOpened):
        return Debug(a, "connection", at, None, event.socket_id)  # origin: not known here
    if isinstance(event, events.ConnectionClosed):
        return Debug(a, "disconnection", at, None, event.socket_id)
    if isinstance(event, events.ChannelOccupied):
        return Debug(a, "occupied", at, event.channel)
    if isinstance(event, events.ChannelVacated):
        return Debug(a, "vacated", at, event.channel)
    if isinstance(event, events.ErrorSent):
        return Debug(a, "error", at, None, event.socket_id, None, None, event.code, event.message)
    if isinstance(event, events.WebhookAttempt):
        tried = f"{event.outcome} after {event.attempts + (event.outcome != 'retried')} attempt(s)"
        message = f"{tried}: {event.reason}" if event.reason else tried
        names = ",".join(event.events)
        return Debug(a, "webhook", at, None, None, names, event.url, None, message)
    return None  # Delivered, MemberAdded, MemberRemoved


class Ring:
    """One app's recent entries, numbered without gaps from :data:`START`."""

    __slots__ = ("entries", "last", "waiters")

    def __init__(self, size: int) -> None:
        self.entries: deque[tuple[Entry, int]] = deque(maxlen=size)  # (entry, lost before it)
        self.last = START  # the sequence number of the last entry
        self.waiters: list[asyncio.Future[None]] = []

    def append(self, node_id: str, d: Debug) -> None:
        """``d`` from node ``node_id``; its ``dropped`` were lost before it."""
        self.last += 1
        entry = {
            "seq": self.last,
            "t": d.at,
            "node": node_id,
            "kind": d.kind,
            "channel": d.channel,
            "socket_id": d.socket_id,
            "event": d.event,
            "data": clip(d.data),
            "code": d.code,
            "message": clip(d.message),
        }
        self.entries.append((entry, max(0, d.dropped)))
        if self.waiters:
            for waiter in self.waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self.waiters.clear()

    def read(self, after: int) -> Read:
        last = self.last
        if after <= 0 or after >= last:  # from now (or a feed older than this one)
            return [], last, 0
        first = last - len(self.entries) + 1
        skipped = max(0, first - 1 - after)  # pushed out of the ring before this read
        newer = list(islice(self.entries, max(0, after + 1 - first), None))
        return [entry for entry, _ in newer], last, skipped + sum(lost for _, lost in newer)


class DebugFeed:
    """The debug console's entries per app, cluster-wide (see the module's docstring).

    The HTTP side calls :meth:`watch` on each poll, then :meth:`read` or :meth:`wait`; the node
    calls :meth:`apply` with the :class:`DebugWatch` and :class:`DebugEntry` effects of the
    others' messages and :meth:`expire` from its housekeeping."""

    def __init__(
        self,
        node_id: str,
        port: events.EventPort,
        view: ClusterView,
        send: Callable[[], None],
        clock: Callable[[], float],
        wall: Callable[[], float] = time.time,
        ring: int = RING,
    ) -> None:
        self.node_id = node_id
        self.port = port
        self.view = view
        self.send = send  # puts the view's messages on the broker
        self.clock = clock  # the node's (leases, rate)
        self.wall = wall  # the entries' time (Unix seconds)
        self.ring_size = ring
        self.rings: dict[str, Ring] = {}  # per app watched here (its entries dropped after)
        self.local: dict[str, float] = {}  # app id → end of the lease of a viewer here
        self.remote: dict[str, float] = {}  # app id → end of the lease of viewers elsewhere
        self.forwarded = 0  # entries sent to other nodes (counted)
        self.dropped = 0  # entries over this node's rate limit (counted)
        self._sent: dict[str, float] = {}  # app id → when its last ``watch`` went out
        self._excess: dict[str, int] = {}  # app id → entries over the rate since its last one
        self._soonest = float("inf")  # the first lease to end
        self._tokens = BURST
        self._filled = clock()
        self._listener = self._on_event

    # the HTTP side ----------------------------------------------------------------------
    def watch(self, app_id: str, now: float | None = None) -> None:
        """A viewer polls ``app_id``: it is watched for :data:`LEASE` seconds more, here and (by
        a ``watch`` every :data:`RENEW` seconds) on the other nodes."""
        now = self.clock() if now is None else now
        if app_id not in self.rings:
            self.rings[app_id] = Ring(self.ring_size)
        self.local[app_id] = now + LEASE
        if now - self._sent.get(app_id, -RENEW) >= RENEW:
            self._sent[app_id] = now
            self.view.watch(app_id, LEASE)
            self.send()
        self._changed()

    def read(self, app_id: str, after: int) -> Read:
        """The entries of ``app_id`` newer than ``after``, the ``after`` of the next read, and
        how many entries between were lost. ``after`` 0 starts from now: no backlog."""
        ring = self.rings.get(app_id)
        return ring.read(after) if ring is not None else ([], START, 0)

    async def wait(self, app_id: str, after: int, timeout: float) -> Read:
        """:meth:`read`, once there is something newer than ``after`` (0: than now) or after
        ``timeout`` seconds (at most :data:`MAX_WAIT`)."""
        ring = self.rings.get(app_id)
        if ring is None:
            return self.read(app_id, after)
        if after <= 0 or after > ring.last:
            after = ring.last
        found = ring.read(after)
        timeout = min(max(timeout, 0.0), MAX_WAIT)
        if found[0] or not timeout:
            return found
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ring.waiters.append(waiter)
        try:
            await asyncio.wait((waiter,), timeout=timeout)
        finally:
            if waiter in ring.waiters:
                ring.waiters.remove(waiter)
            waiter.cancel()
        return self.read(app_id, after)

    def errors(self, app_id: str, limit: int = 50) -> list[Entry]:
        """The latest ``error`` entries of ``app_id`` (newest last), as ``{"t", "node",
        "socket_id", "code", "message"}``: those the ring holds, so only while it is watched
        (recording them always would make every emission site build its event)."""
        ring = self.rings.get(app_id)
        if ring is None:
            return []
        keys = ("t", "node", "socket_id", "code", "message")
        found = [e for e, _ in reversed(ring.entries) if e["kind"] == "error"][:limit]
        return [{key: e[key] for key in keys} for e in reversed(found)]

    # the node ---------------------------------------------------------------------------
    def apply(self, effect: DebugWatch | DebugEntry) -> None:
        """Another node's ``watch`` (forward entries of the app) or ``debug`` (an entry for a
        viewer here)."""
        now = self.clock()
        if isinstance(effect, DebugWatch):
            ttl = min(effect.ttl, MAX_REMOTE_LEASE)
            if ttl > 0 and now + ttl > self.remote.get(effect.app_id, 0.0):
                self.remote[effect.app_id] = now + ttl
                self._changed()
            return
        app_id = effect.entry.app_id
        ring = self.rings.get(app_id)
        if ring is not None and app_id in self.local:
            ring.append(effect.node_id, effect.entry)

    def expire(self, now: float) -> None:
        """End the leases past their time, renew the live ones' ``watch`` messages, and stop
        listening when none is left (the node's housekeeping calls it every few seconds)."""
        renew = False
        for app_id, until in list(self.local.items()):
            if until <= now:
                del self.local[app_id]
                self._sent.pop(app_id, None)
                ring = self.rings.get(app_id)
                if ring is not None:
                    ring.entries.clear()  # its numbers go on, for a viewer that comes back
            elif now - self._sent.get(app_id, -RENEW) >= RENEW:
                self._sent[app_id] = now
                self.view.watch(app_id, until - now)
                renew = True
        for app_id, until in list(self.remote.items()):
            if until <= now:
                del self.remote[app_id]
                self._excess.pop(app_id, None)
        self._changed()
        if renew:
            self.send()

    def _changed(self) -> None:
        """Listen on the event port exactly while a lease is live."""
        ends = [*self.local.values(), *self.remote.values()]
        self._soonest = min(ends, default=float("inf"))
        listening = self._listener in self.port.listeners
        if ends and not listening:
            self.port.listen(self._listener)
        elif not ends and listening:
            self.port.unlisten(self._listener)

    def _on_event(self, event: events.Event) -> None:
        now = self.clock()
        if now >= self._soonest:
            self.expire(now)
        app_id = event.app_id
        here = app_id in self.local
        if not here and app_id not in self.remote:
            return
        entry = describe(event, self.wall())
        if entry is None:
            return
        if here:
            self.rings[app_id].append(self.node_id, entry)
        if app_id in self.remote:
            self._forward(app_id, entry, now)

    def _forward(self, app_id: str, entry: Debug, now: float) -> None:
        """Send an entry to the viewers elsewhere, within the rate (else count it)."""
        self._tokens = min(BURST, self._tokens + (now - self._filled) * RATE)
        self._filled = now
        if self._tokens < 1 or not self.view.forwardable():
            self._excess[app_id] = self._excess.get(app_id, 0) + 1
            self.dropped += 1
            return
        self._tokens -= 1
        self.forwarded += 1
        dropped = self._excess.pop(app_id, 0)
        self.view.debug(replace(entry, dropped=dropped) if dropped else entry)
        self.send()
