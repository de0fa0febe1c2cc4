"""The role interface a node needs from a distributed engine (docs/cluster.md).

A :class:`Broker` carries two kinds of traffic between the nodes of a cluster:

* **publications**: an encoded Pusher event for a channel, with the ``socket_id`` to leave out;
* **control messages**: opaque text that the nodes use to share presence, counts and liveness
  (:mod:`ressonance.node.cluster` writes and reads them; the broker never looks inside).

A node delivers its own publications locally; the broker carries them to the *other* nodes and
never hands a node its own traffic back. The node hands the broker a :class:`BrokerHandler`; the
broker never imports the node.
"""

from __future__ import annotations

from typing import Protocol


class BrokerHandler(Protocol):
    def deliver(self, app_id: str, channel: str, message: str, exclude: str | None) -> None:
        """Write ``message`` (a Pusher JSON frame) to this node's subscribers of ``channel``,
        except the socket whose id is ``exclude``."""

    def control(self, origin: str, payload: str) -> None:
        """A control message sent by node ``origin`` with :meth:`Broker.send`."""

    def link_changed(self, up: bool) -> None:
        """The broker lost (``False``) or gained (``True``) its link to the engine. After a
        ``True`` the node (re-)announces itself: messages may have been lost while it was down.
        A networked broker calls it on its first connect too, during :meth:`Broker.start` or
        later when the engine was down at start; the memory broker is always up and never calls
        it, so the node also announces itself when ``start`` returns connected."""


class Broker(Protocol):
    """Fan-out between nodes. Guarantees: at most once; in order per sending node; a node never
    receives what it sent. While the engine is unreachable, sends are held in a bounded queue and
    go out once the link is back (the oldest are dropped, counted and logged, when it is full).
    A link that stops delivering, whatever the cause, is given up and opened again within
    seconds, as if the engine had gone away."""

    node_id: str

    async def start(self, handler: BrokerHandler) -> None:
        """Connect and subscribe, then deliver other nodes' traffic to ``handler``. If the engine
        is unreachable, log it and keep retrying with backoff in the background: the node still
        serves its own sockets."""

    def publish(self, app_id: str, channel: str, message: str, exclude: str | None) -> None:
        """Send a publication to every other node. Never blocks, never raises."""

    def send(self, payload: str) -> None:
        """Send a control message to every other node. Never blocks, never raises."""

    @property
    def connected(self) -> bool:
        """Whether the link to the engine is up now (readiness, cluster liveness checks)."""

    @property
    def full(self) -> bool:
        """Whether the queue is full: another send would push the oldest frame out."""

    @property
    def dropped(self) -> int:
        """Frames given up so far: the oldest when the queue was full, and ones the engine
        refused or lost with a failed write (for metrics)."""

    @property
    def link_losses(self) -> int:
        """Times the link went down so far (for metrics)."""

    @property
    def reconnects(self) -> int:
        """Times the link came back after a loss so far (for metrics)."""

    async def close(self) -> None:
        """Send what is queued (bounded wait), then stop delivering and disconnect."""
