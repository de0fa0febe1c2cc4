"""The node's link to the other nodes: control messages out and in, heartbeats, the liveness of
the others, this node's full state on request, and what readiness and publishing depend on.

:class:`ClusterLink` pumps what :class:`~ressonance.node.cluster.ClusterView` has to say into
the broker and hands what the others said back to the node as effects (``apply``); it owns no
sockets and never writes one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ressonance.faultlog import FaultLog
from ressonance.node.cluster import ClusterView, Effect
from ressonance.node.hub import Hub
from ressonance.node.schedule import soon
from ressonance.scaling.base import Broker

log = logging.getLogger("ressonance.node")
faults = FaultLog(log)

STATE_INTERVAL = 0.5  # seconds: the least time between two full states of this node
STALLED = 2.0  # seconds between two heartbeats (one a second) that mean this node did not run


class ClusterLink:
    """This node's side of the cluster protocol (docs/cluster.md)."""

    def __init__(
        self,
        view: ClusterView,
        broker: Broker,
        hub: Hub,
        clock: Callable[[], float],
        node_timeout: float,
        apply: Callable[[list[Effect]], None],
    ) -> None:
        self.view = view
        self.broker = broker
        self.hub = hub
        self.clock = clock
        self.node_timeout = node_timeout
        self.apply = apply
        self.up_since: float | None = None
        self.down_since: float | None = None
        self.draining = False
        self.stalls = 0  # times this node did not run for STALLED seconds or more (counted)
        self.publishes_refused = 0  # HTTP publishes answered 503 (counted)
        self._refusing = 0  # ... of the current run, for the log
        self._beat = clock()
        self._state_pending = False
        self._state_sent = -STATE_INTERVAL
        # this node's stats for the others' dashboards, sent with each heartbeat (quick: once
        # a second); None sends none
        self.stats_source: Callable[[], dict[str, float]] | None = None

    def started(self) -> None:
        """The broker started (it may have taken a while): the link is up or down from now."""
        self._beat = self.clock()
        if not self.broker.connected:
            self.down_since = self._beat
        elif self.up_since is None:
            self.changed(True)

    def send(self) -> None:
        """Put what the view has to say on the broker."""
        for payload in self.view.messages_to_send():
            self.broker.send(payload)

    def receive(self, origin: str, payload: str) -> None:
        """A control message from another node."""
        self.apply(self.view.receive(origin, payload, self.clock()))
        self.send()

    def changed(self, up: bool) -> None:
        """The broker's link went down or came back; when back, announce this node again
        (messages may have been lost both ways)."""
        now = self.clock()
        if not up:
            self.up_since = None
            if self.down_since is None:
                self.down_since = now
            log.warning("cluster link down: serving this node's sockets only")
            return
        self.down_since = None
        if self.up_since is None:
            self.up_since = now
        self.view.hello(self.connections(), self.hub.counts(), now)
        self.send()

    def unready(self) -> list[str]:
        """Why this node should get no new connections now (none: it is ready), for
        ``GET /ready``: the one place where the reasons are made."""
        reasons = []
        if self.draining:
            reasons.append("draining")
        if self.down_since is not None:
            down = self.clock() - self.down_since
            if down > self.node_timeout:
                reasons.append(f"broker link down for {down:.0f} s")
        return reasons

    def publishable(self) -> bool:
        """Whether an HTTP publish can be taken now: not while the broker's outbox is full (the
        link is down, or back and not caught up yet), where it would push an older frame out
        unseen. The API answers 503 then; refusals are counted, and logged when a run of them
        starts and ends."""
        if not self.broker.full:
            if self._refusing:
                log.info("HTTP publishes accepted again (%d refused)", self._refusing)
                self._refusing = 0
            return True
        if not self._refusing:
            log.warning("the cluster link's outbox is full: HTTP publishes are answered 503")
        self._refusing += 1
        self.publishes_refused += 1
        return False

    def announce_drain(self) -> None:
        """A drain starts: from now on the heartbeats count no connections here, since every
        one is about to be closed with 4200 and reconnect elsewhere (it must not be counted
        twice against ``max_connections`` there). Tells the other nodes at once."""
        self.draining = True
        self.view.heartbeat(self.connections(), self.stats())
        self.send()

    def connections(self) -> dict[str, int]:
        return {} if self.draining else self.hub.connections()

    def heartbeat(self) -> None:
        """Every second, while the link is up: a heartbeat (the re-announcement after an
        outage stands for those missed), and drop the nodes silent for ``node_timeout`` seconds.
        Silence must be theirs: it counts only once this node has heard the cluster that long,
        with its link up and itself running. A node that did not run (stopped with SIGSTOP,
        starved) finds their traffic waiting when it runs again, and it comes after this."""
        now = self.clock()
        stalled, self._beat = now - self._beat, now
        if stalled >= STALLED:
            self.stalls += 1
            log.warning("this node did not run for %.1f s; others' silence counts anew", stalled)
            if self.up_since is not None:
                self.up_since = now
        since = self.up_since
        if since is None:
            return
        self.view.heartbeat(self.connections(), self.stats())
        if now - since >= self.node_timeout:
            for node_id in self.view.silent(now, self.node_timeout):
                log.warning("node %s went silent: removing its members", node_id)
                self.apply(self.view.drop(node_id))
        self.send()

    def stats(self) -> dict[str, float] | None:
        """The stats to send (:attr:`stats_source`); a failing source sends the last ones and
        is logged, since the heartbeat must go out."""
        if self.stats_source is None:
            return None
        try:
            return self.stats_source()
        except Exception:
            faults.exception("the node's stats source failed")
            return None

    def want_state(self) -> None:
        """Send this node's full state for a ``hello`` or ``sync``: once for all the requests
        of a loop tick, and at most every ``STATE_INTERVAL`` seconds (every node asks after a
        broker outage; a state is this node's whole picture and answers them all)."""
        if self._state_pending:
            return
        self._state_pending = True
        wait = self._state_sent + STATE_INTERVAL - self.clock()
        soon(self._send_state, max(0.0, wait))

    def _send_state(self) -> None:
        self._state_pending = False
        self._state_sent = self.clock()
        self.view.send_state(self.connections(), self.hub.counts(), self._state_sent)
        self.send()
