"""The node as a listener's WebSocket :class:`~ressonance.transport.gateway.Gateway`.

The transport hands over an upgrade's app key; the app is looked up here (the store may be a
database), then the node admits the connection or raises the ``PusherError`` to close with.
Everything after admission goes straight to the node's own methods, bound once, so a client
frame costs no extra call on its way in.
"""

from __future__ import annotations

from ressonance.apps.base import AppStore
from ressonance.models import App
from ressonance.node.node import Node


class NodeGateway:
    """Admission by app key, then the node's ``connect``, ``receive``, ``disconnect``, ``fail``."""

    __slots__ = ("_apps", "_node", "connect", "disconnect", "fail", "receive")

    def __init__(self, node: Node, apps: AppStore) -> None:
        self._node = node
        self._apps = apps
        self.connect = node.connect
        self.receive = node.receive
        self.disconnect = node.disconnect
        self.fail = node.fail

    async def admit(self, key: str, protocol: str | None, origin: str | None) -> App:
        return self._node.admit(await self._apps.by_key(key), protocol, origin)
