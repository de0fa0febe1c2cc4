"""The role interfaces a node needs from a distributed engine.

A :class:`Broker` carries publications to every node of the cluster (this one included). The
node hands the broker a :class:`PublicationHandler`; the broker never imports the node.
"""

from __future__ import annotations

from typing import Protocol


class PublicationHandler(Protocol):
    def deliver(self, app_id: str, channel: str, message: str, exclude: str | None) -> None:
        """Write ``message`` (a Pusher JSON frame) to this node's subscribers of ``channel``,
        except the socket whose id is ``exclude``."""


class Broker(Protocol):
    """Fan-out of publications to all nodes. Guarantee: at most once, in order per publisher."""

    async def start(self, handler: PublicationHandler) -> None:
        """Begin delivering publications (from every node) to ``handler``."""

    def publish(self, app_id: str, channel: str, message: str, exclude: str | None) -> None:
        """Send a publication to every node, this one included. Never blocks, never raises
        for a network problem (it logs and counts it)."""

    async def close(self) -> None:
        """Stop delivering; release connections."""
